// LibTorch's CPU allocator for satcap: large tensors come from a cache of mapped blocks whose total
// stays within 1.25x the largest amount live at once, so a process's memory no longer depends on
// where glibc's heap happened to place them.
//
// Why: with tune_allocator's thresholds (runtime.h) every tensor lives in glibc's heap, which is
// never handed back. Training's tensors change size from batch to batch (caption lengths), so the
// heap fragments and keeps the worst layout met so far: measured on the same 2,000-scene epoch,
// 185 to 231 MiB of heap depending on the build, and growing with the steps taken (264 MiB by step
// 300 of a longer run), not with the data. Handing large blocks back to the kernel instead (glibc's
// own mmap threshold) removes that but costs a page fault and a zero-fill per page of every tensor:
// 10% of a training step here.
//
// The cache keeps freed blocks of at least kLargeBlockBytes (each its own mapping) and hands them
// out again best-fit (a block at most 1.5x the request). A new block is mapped only after enough
// cached ones are unmapped that the total mapped stays within 1.25x the largest total live so far,
// so the cache's memory is bounded by the program's own peak working set, whatever the order of
// sizes and however many steps. Smaller blocks go to LibTorch's usual allocation (c10::alloc_cpu,
// glibc's heap).
//
// Where it is used: training on stored features (`satcap train` without --fine-tune-encoder, and
// the benchmark's training steps), whose tensors repeat from step to step. Not the encoder's
// forward (prepare, caption, encode, fine-tuning): MobileNetV2's activations are some sixty
// different sizes per batch, far more in sum than the peak live, and blocks are not split, so the
// bound unmapped and mapped them again in every forward: `bench --only prepare` ran its bare forward
// at 43-46 images/s against 89-99 with LibTorch's allocator, where glibc's heap reuses one region
// for many sizes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace satcap {

// Blocks from this size up (the request plus the allocator's 64-byte header) are cached mappings.
constexpr std::size_t kLargeBlockBytes = std::size_t{1} << 20;

struct CpuAllocatorStats {
  bool installed = false;
  std::size_t live_bytes = 0;         // large blocks in use (block sizes, not requests)
  std::size_t cached_bytes = 0;       // large blocks free and kept for reuse
  std::size_t mapped_bytes = 0;       // live + cached
  std::size_t peak_live_bytes = 0;    // the largest live_bytes so far
  std::size_t bound_bytes = 0;        // 1.25 x peak_live_bytes: mapped_bytes stays within it
  std::size_t peak_mapped_bytes = 0;  // the largest mapped_bytes so far
  std::uint64_t hits = 0;             // large requests served from the cache
  std::uint64_t misses = 0;           // large requests that mapped a new block
  std::uint64_t unmapped = 0;         // cached blocks handed back to the kernel
};

// Makes this allocator LibTorch's CPU allocator (c10::SetCPUAllocator) for tensors allocated from
// now on; tensors allocated before keep their own deleters. Does nothing and returns false when
// SATCAP_SYSTEM_ALLOCATOR=1 is in the environment (LibTorch's allocator stays). Returns true when
// it is (now) installed.
bool install_cpu_allocator();

// LibTorch's default CPU allocator again for new tensors; the cached blocks are unmapped (blocks
// still in use return to the cache when freed). Each switch raises c10's allocator priority: a
// process can switch up to 255 times.
void uninstall_cpu_allocator();

// The large-block cache's figures (zeros before the first install_cpu_allocator); installed says
// whether it serves new tensors now.
CpuAllocatorStats cpu_allocator_stats();

// Unmaps every cached free block (live blocks stay); returns the bytes handed back.
std::size_t release_cached_blocks();

}  // namespace satcap
