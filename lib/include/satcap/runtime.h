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
void tune_allocator();

// Number of cores this process may run on (sched_getaffinity, not the machine's total).
int available_cores();

// Parses "cpu", "cuda" or "cuda:N" and checks that the device exists in this build and machine;
// throws UsageError with the reason otherwise ("--device cuda: this LibTorch was built without
// CUDA; install an official CUDA LibTorch and rebuild, or use --device cpu").
c10::Device parse_device(const std::string& spec);

// A one-line description of the build: satcap and LibTorch versions, BLAS, CUDA availability.
std::string build_summary();

}  // namespace satcap
