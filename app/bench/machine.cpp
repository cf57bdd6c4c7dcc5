// The machine the benchmark ran on, for the report (measure.h): the CPU, the BLAS this process
// loaded, the versions; and the clocks the measurements read.
#include <dlfcn.h>
#include <time.h>

#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <fstream>

#include "bench/measure.h"
#include "satcap/build_config.h"
#include "satcap/runtime/runtime.h"

namespace fs = std::filesystem;

namespace satcap::bench {

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

// The BLAS this process actually loaded (from /proc/self/maps) and OpenBLAS's own description.
json blas_info() {
  json info;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::vector<std::string> libs;
  while (std::getline(maps, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    std::string name = fs::path(path).filename().string();
    if (name.find("blas") == std::string::npos && name.find("mkl") == std::string::npos &&
        name.find("lapack") == std::string::npos) {
      continue;
    }
    if (std::find(libs.begin(), libs.end(), path) == libs.end()) libs.push_back(path);
  }
  info["loaded"] = libs;
  using ConfigFn = char* (*)();
  if (auto fn = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    info["openblas_config"] = std::string(fn());
  }
  using ThreadsFn = int (*)();
  if (auto fn = reinterpret_cast<ThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"))) {
    info["openblas_max_threads"] = fn();  // OpenBLAS (OpenMP build) uses omp_get_max_threads() per call
  }
  const BlasKernels kernels = blas_kernels();
  if (!kernels.active.empty()) {
    info["openblas_kernels"] = kernels.active;
    info["openblas_kernels_detected"] = kernels.detected;
    info["openblas_kernels_switched"] = kernels.switched;
  }
  std::string summary;
  if (kernels.switched) summary = "kernels " + kernels.active + " chosen by satcap over OpenBLAS's fallback " + kernels.detected + "; ";
  for (size_t i = 0; i < libs.size(); ++i) summary += (i > 0 ? ", " : "") + libs[i];
  if (info.contains("openblas_config")) summary = info["openblas_config"].get<std::string>() + " (" + summary + ")";
  // (Python's torch in the child processes inherits OPENBLAS_CORETYPE, so it runs the same kernels.)
  info["summary"] = summary.empty() ? "none found in this process" : summary;
  return info;
}

}  // namespace

json machine_facts(const BenchRun& run) {
  json blas = blas_info();
  return {{"cpu", cpu_model()},          {"cores", available_cores()},
          {"threads", run.threads},      {"blas", blas["summary"]},
          {"blas_detail", blas},         {"libtorch", TORCH_VERSION},
          {"device", run.device.str()},  {"satcap", SATCAP_VERSION}};
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void sync(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

}  // namespace satcap::bench
