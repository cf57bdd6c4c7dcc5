#include "satcap/runtime/runtime.h"

#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <c10/core/Device.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "satcap/build_config.h"
#include "satcap/runtime/cpu_allocator.h"  // release_cached_blocks
#include "satcap/runtime/abi_check.h"
#include "satcap/runtime/error.h"
#include "runtime/sanitizers.h"

namespace satcap {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

void tune_allocator() {
#ifdef SATCAP_ASAN
  // AddressSanitizer replaces malloc: glibc's thresholds would tune a heap nobody uses (its mallopt
  // is a no-op returning 0), and the sanitizer's own allocator must keep its redzones and quarantine.
  return;
#endif
  for (const char* var : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"}) {
    if (std::getenv(var)) return;
  }
  // 1 GiB: the beam search's attention tensors are ~100 MB ([rows, n, A] at 50 images x beam 5);
  // glibc 2.35+ accepts thresholds above its dynamic 32 MiB cap (older ones refuse, keeping 32 MiB).
  if (mallopt(M_MMAP_THRESHOLD, 1024 * 1024 * 1024) != 1) mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, static_cast<int>(2047LL * 1024 * 1024));  // int: about 2 GiB
  mallopt(M_TOP_PAD, 256 * 1024 * 1024);
}

void release_free_memory() {
  release_cached_blocks();
#if defined(__GLIBC__) && !defined(SATCAP_ASAN)  // under AddressSanitizer glibc's heap is not malloc's
  malloc_trim(0);
#endif
}

namespace {

// OpenBLAS's own entry points, looked up at run time: satcap does not link OpenBLAS itself (LibTorch
// brings whichever BLAS the system provides). gotoblas_dynamic_quit/init are exported by its
// DYNAMIC_ARCH builds: quit forgets the kernel table, init chooses one again (reading
// OPENBLAS_CORETYPE) and initialises its block sizes; no buffers depend on the choice before the
// first product.
struct OpenBlas {
  char* (*corename)() = nullptr;
  void (*dynamic_init)() = nullptr;
  void (*dynamic_quit)() = nullptr;
  OpenBlas() {
    corename = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
    dynamic_init = reinterpret_cast<void (*)()>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
    dynamic_quit = reinterpret_cast<void (*)()>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
  }
  std::string core() const { return corename ? std::string(corename()) : std::string(); }
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The best OpenBLAS kernel set for this CPU's features, or nullptr.
const char* kernels_for_this_cpu() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

BlasKernels g_selection;  // what select_blas_kernels found, for blas_kernels()
bool g_selected = false;

}  // namespace

BlasKernels blas_kernels() {
  OpenBlas blas;
  BlasKernels k = g_selected ? g_selection : BlasKernels{};
  if (!g_selected) k.detected = blas.core();
  k.active = blas.core();
  return k;
}

BlasKernels select_blas_kernels() {
  if (g_selected) return blas_kernels();
  g_selected = true;
  OpenBlas blas;
  BlasKernels& k = g_selection;
  k.detected = k.active = blas.core();
  if (!blas.dynamic_init || !blas.dynamic_quit || lower(k.detected) != "prescott") return k;
  if (std::getenv("OPENBLAS_CORETYPE")) return k;  // the user's choice
  if (const char* keep = std::getenv("SATCAP_KEEP_BLAS_KERNELS"); keep && std::string(keep) == "1") return k;
  const char* target = kernels_for_this_cpu();
  if (!target) return k;  // a CPU without AVX2: Prescott is right
  ::setenv("OPENBLAS_CORETYPE", target, 0);
  blas.dynamic_quit();
  blas.dynamic_init();
  k.active = blas.core();
  k.switched = lower(k.active) != lower(k.detected);
  return k;
}

int max_threads() { return kMaxThreadsPerCore * available_cores(); }

void validate_threads(int requested) {
  if (requested < 0) throw UsageError("--threads must be 0 (all cores) or positive (got " + std::to_string(requested) + ")");
  if (requested > max_threads()) {
    // Thousands of OpenMP threads take minutes to start and only slow the work down.
    throw UsageError("--threads " + std::to_string(requested) + ": at most " + std::to_string(max_threads()) + " (" +
                     std::to_string(kMaxThreadsPerCore) + " per core; this process may use " +
                     std::to_string(available_cores()) + " cores); use 0 for all cores");
  }
}

int configure_threads(int requested) {
  validate_threads(requested);
  int n = requested == 0 ? available_cores() : requested;
  at::set_num_threads(n);
  return at::get_num_threads();
}

c10::Device parse_device(const std::string& spec) {
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(spec);
  } catch (const std::exception&) {
    throw UsageError("--device '" + spec + "': expected cpu, cuda or cuda:N");
  }
  if (device.is_cpu()) return device;
  if (!device.is_cuda()) throw UsageError("--device '" + spec + "': only cpu and cuda are supported");
  if (!torch::cuda::is_available()) {
    throw UsageError("--device " + spec +
                     ": no CUDA device is available (this LibTorch build has no CUDA support, or no GPU "
                     "is visible); build against an official CUDA LibTorch, or use --device cpu");
  }
  auto count = static_cast<int>(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count) {
    throw UsageError("--device " + spec + ": only " + std::to_string(count) + " CUDA device(s) visible");
  }
  return device;
}

std::string build_summary() {
  std::ostringstream out;
  out << "satcap " << SATCAP_VERSION << ", LibTorch " << TORCH_VERSION << ", " << at::get_num_threads()
      << " thread(s), CUDA " << (torch::cuda::is_available() ? "available" : "not available");
  BlasKernels k = blas_kernels();
  if (!k.active.empty()) {
    out << ", OpenBLAS kernels " << k.active;
    if (k.switched) out << " (chosen by satcap: OpenBLAS fell back to " << k.detected << " on this CPU)";
  }
  const std::string provider = filesystem_provider();
  out << ", std::filesystem from " << (provider.empty() ? std::string("?") : std::filesystem::path(provider).filename().string());
  if (!filesystem_from_standard_library()) out << " (NOT the C++ standard library: see satcap/runtime/abi_check.h)";
  return out.str();
}

}  // namespace satcap
