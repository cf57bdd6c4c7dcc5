// Process-wide runtime settings: LibTorch's thread pools and the compute device.
#pragma once

#include <c10/core/Device.h>  // light: no tensor headers

#include <string>

namespace satcap {

// More threads than this per available core are refused (they only slow the work down, and
// thousands of them take minutes to start).
constexpr int kMaxThreadsPerCore = 4;

// Throws UsageError naming --threads unless 0 <= requested <= max_threads().
void validate_threads(int requested);

// kMaxThreadsPerCore x available_cores().
int max_threads();

// Sets LibTorch's intra-op thread count. 0 means "the cores available to this process"
// (LibTorch here otherwise starts with one thread). Returns the count in force.
// Throws UsageError for a count validate_threads refuses.
int configure_threads(int requested);

// Keeps freed memory in the process for reuse instead of handing it back to the kernel after every
// tensor: glibc serves blocks up to 1 GiB from its heap and trims it only above 2 GiB of free top
// memory. LibTorch frees and reallocates tens of megabytes per decoding step; with glibc's defaults
// each such block is a fresh mmap whose pages are faulted in and zeroed again (measured with
// `satcap bench`: about 2x the training step's speed). Does nothing when MALLOC_MMAP_THRESHOLD_,
// MALLOC_TRIM_THRESHOLD_ or MALLOC_TOP_PAD_ is set in the environment (the user's choice wins).
// Training on stored features replaces this heap for large tensors with satcap's block cache
// (satcap/runtime/cpu_allocator.h), whose memory does not depend on the heap's layout.
void tune_allocator();

// Hands free memory back to the kernel: the block cache's cached blocks and the heap's free pages
// (glibc's malloc_trim). For a point after a large structure is released for good, such as the
// parsed dataset once training has copied out what it needs: both would otherwise keep them.
void release_free_memory();

// What select_blas_kernels() found and did.
struct BlasKernels {
  std::string detected;  // OpenBLAS's kernel set chosen at load time ("" when the BLAS is not OpenBLAS)
  std::string active;    // the kernel set in force now
  bool switched = false;  // true when satcap replaced OpenBLAS's fallback
};

// OpenBLAS with DYNAMIC_ARCH (Debian's 0.3.21) picks its kernels from the CPU model and falls back
// to its oldest x86-64 set, "Prescott" (SSE3), on models newer than itself, even when the CPU has
// AVX-512 (OpenBLAS issue #4267; measured here on a Xeon of family 6 model 207: sgemm 58 GFLOP/s
// with Prescott, 211 with SkylakeX). When OpenBLAS reports that fallback and OPENBLAS_CORETYPE is
// not set, this chooses the kernels from the CPU's features (AVX-512 F/CD/BW/DQ/VL: SkylakeX;
// AVX2 and FMA: Haswell), sets OPENBLAS_CORETYPE (so child processes, such as the benchmark's
// Python scripts, use them too) and re-runs OpenBLAS's kernel selection. Call it at the start of
// main, before any matrix product. Does nothing for another BLAS, another choice of OpenBLAS's, or
// SATCAP_KEEP_BLAS_KERNELS=1 in the environment. Runs once; later calls return the first result.
BlasKernels select_blas_kernels();

// The kernels in force and what select_blas_kernels() did (no change made here).
BlasKernels blas_kernels();

// Number of cores this process may run on (sched_getaffinity, not the machine's total).
int available_cores();

// Parses "cpu", "cuda" or "cuda:N" and checks that the device exists in this build and machine;
// throws UsageError with the reason otherwise ("--device cuda: this LibTorch was built without
// CUDA; install an official CUDA LibTorch and rebuild, or use --device cpu").
c10::Device parse_device(const std::string& spec);

// A one-line description of the build: satcap and LibTorch versions, BLAS, CUDA availability.
std::string build_summary();

}  // namespace satcap
