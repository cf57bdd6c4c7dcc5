#include "satcap/runtime/cpu_allocator.h"

#include <sys/mman.h>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "runtime/sanitizers.h"

namespace satcap {
namespace {

// Every block starts with this header; the tensor's data follows it, 64-byte aligned as LibTorch
// requires. The deleter reads it to tell the two kinds of block apart without a lookup or a lock.
struct alignas(64) Header {
  std::uint64_t tag;
  std::size_t block_bytes;  // large blocks: the mapping's size
};
static_assert(sizeof(Header) == 64, "the data must stay 64-byte aligned");

constexpr std::uint64_t kSmallTag = 0x73617463'61705f73ULL;  // "satcap_s"
constexpr std::uint64_t kLargeTag = 0x73617463'61705f6cULL;  // "satcap_l"
constexpr std::size_t kLargeRounding = std::size_t{64} << 10;  // mapped sizes are multiples of 64 KiB
// The cache may map up to 1/4 more than the peak live total. Without that slack, a longer batch's
// larger tensor unmapped a cached block that the same step needed next, whose new mapping then
// unmapped another: 1,079 blocks unmapped in the 125 steps of a 2,000-scene epoch, and the
// COCO-scale soft step at 552-689 words/s against 658-730 with LibTorch's allocator (`bench
// --quick --only train --batches 64`). With it: 7 blocks, and 726-733 words/s.
constexpr std::size_t kSlackDivisor = 4;

class BlockCache {
 public:
  struct Block {
    void* base;
    std::size_t bytes;
  };

  // A block of at least `bytes` (a multiple of kLargeRounding). Throws c10::Error when the kernel
  // refuses the mapping even with the cache emptied.
  Block take(std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto fit = free_.lower_bound(bytes);
    if (fit != free_.end() && fit->first <= bytes + bytes / 2) {
      Block block{fit->second, fit->first};
      free_.erase(fit);
      cached_ -= block.bytes;
      add_live(block.bytes);
      ++hits_;
      return block;
    }
    ++misses_;
    add_live(bytes);
    // Keep mapped() (which counts the new block as live) within bound(): unmap cached blocks, first
    // those just smaller than the request (most often the same tensor of an earlier, shorter
    // batch), then the largest.
    while (!free_.empty() && mapped() > bound()) {
      auto victim = free_.lower_bound(bytes);
      victim = victim != free_.begin() ? std::prev(victim) : std::prev(free_.end());
      unmap(victim);
    }
    void* base = map(bytes);
    if (base == nullptr) {
      unmap_all();
      base = map(bytes);
    }
    if (base == nullptr) {
      live_ -= bytes;
      TORCH_CHECK(false, "satcap CPU allocator: not enough memory: tried to allocate ", bytes, " bytes (",
                  live_, " bytes in use)");
    }
    return {base, bytes};
  }

  void give(void* base, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    live_ -= bytes;
    cached_ += bytes;
    free_.emplace(bytes, base);
  }

  std::size_t release() {
    std::lock_guard<std::mutex> lock(mutex_);
    return unmap_all();
  }

  CpuAllocatorStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    CpuAllocatorStats s;
    s.live_bytes = live_;
    s.cached_bytes = cached_;
    s.mapped_bytes = mapped();
    s.peak_live_bytes = peak_live_;
    s.peak_mapped_bytes = peak_mapped_;
    s.bound_bytes = bound();
    s.hits = hits_;
    s.misses = misses_;
    s.unmapped = unmapped_;
    return s;
  }

 private:
  std::size_t mapped() const { return live_ + cached_; }
  std::size_t bound() const { return peak_live_ + peak_live_ / kSlackDivisor; }

  void add_live(std::size_t bytes) {
    live_ += bytes;
    if (live_ > peak_live_) peak_live_ = live_;
  }

  // Called with live_ already counting the new block.
  void* map(std::size_t bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    if (mapped() > peak_mapped_) peak_mapped_ = mapped();
    return p;
  }

  void unmap(std::multimap<std::size_t, void*>::iterator it) {
    SATCAP_UNPOISON(it->second, it->first);  // the kernel may hand the range to anyone next
    munmap(it->second, it->first);
    cached_ -= it->first;
    ++unmapped_;
    free_.erase(it);
  }

  // Every cached block; returns the bytes handed back.
  std::size_t unmap_all() {
    const std::size_t released = cached_;
    while (!free_.empty()) unmap(std::prev(free_.end()));
    return released;
  }

  mutable std::mutex mutex_;
  std::multimap<std::size_t, void*> free_;  // block size -> base
  std::size_t live_ = 0, cached_ = 0, peak_live_ = 0, peak_mapped_ = 0;
  std::uint64_t hits_ = 0, misses_ = 0, unmapped_ = 0;
};

BlockCache& cache() {
  static BlockCache* instance = new BlockCache();  // never destroyed: tensors may outlive main
  return *instance;
}

void release_block(void* data) {
  if (data == nullptr) return;
  Header* header = static_cast<Header*>(data) - 1;
  if (header->tag == kSmallTag) {
    header->tag = 0;
    c10::free_cpu(header);
  } else if (header->tag == kLargeTag) {
    header->tag = 0;
    const std::size_t bytes = header->block_bytes;
    // Under AddressSanitizer a cached block is poisoned: a tensor used after it was freed (and a
    // second free, which reads the header) is reported instead of reading a reused block.
    SATCAP_POISON(header, bytes);
    cache().give(header, bytes);
  } else {
    std::fprintf(stderr, "satcap CPU allocator: freeing %p, which it did not allocate (or twice)\n", data);
    std::abort();
  }
}

class CachingCpuAllocator final : public c10::Allocator {
 public:
  // LibTorch 1.x declares allocate const, 2.x (from 2.3) not: defining both overrides either.
  c10::DataPtr allocate(std::size_t n) const { return make(n); }
  c10::DataPtr allocate(std::size_t n) { return make(n); }
  // Pure virtual from LibTorch 2.3 on; a plain member before.
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }
  c10::DeleterFnPtr raw_deleter() const override { return &release_block; }

 private:
  static c10::DataPtr make(std::size_t n) {
    const c10::Device cpu(c10::DeviceType::CPU);
    if (n == 0) return {nullptr, nullptr, &release_block, cpu};
    const std::size_t with_header = n + sizeof(Header);
    Header* header = nullptr;
    if (with_header < kLargeBlockBytes) {
      header = static_cast<Header*>(c10::alloc_cpu(with_header));
      header->tag = kSmallTag;
      header->block_bytes = with_header;
    } else {
      const std::size_t bytes = (with_header + kLargeRounding - 1) / kLargeRounding * kLargeRounding;
      BlockCache::Block block = cache().take(bytes);
      // Under AddressSanitizer only the header and the n bytes asked for are addressable; the
      // rounding up to 64 KiB (and the rest of a larger cached block) is poisoned, so that an
      // overrun of the tensor is reported as it would be with malloc.
      SATCAP_UNPOISON(block.base, sizeof(Header) + n);
      SATCAP_POISON(static_cast<char*>(block.base) + sizeof(Header) + n, block.bytes - sizeof(Header) - n);
      header = static_cast<Header*>(block.base);
      header->tag = kLargeTag;
      header->block_bytes = block.bytes;
    }
    void* data = header + 1;
    return {data, data, &release_block, cpu};
  }
};

std::mutex install_mutex;
std::uint8_t install_priority = 0;    // c10 keeps the allocator of the highest priority set so far
std::atomic<bool> installed{false};  // read by cpu_allocator_stats on any thread
std::atomic<bool> ever_installed{false};

// Makes `allocator` LibTorch's CPU allocator: each switch needs a higher priority than the last.
// Call with install_mutex held.
void switch_cpu_allocator(c10::Allocator* allocator) {
  TORCH_CHECK(install_priority < 255, "satcap CPU allocator: switched too often");
  c10::SetCPUAllocator(allocator, ++install_priority);  // the first is above LibTorch's own registration (0)
}

}  // namespace

bool install_cpu_allocator() {
  std::lock_guard<std::mutex> lock(install_mutex);
  if (installed) return true;
  const char* system = std::getenv("SATCAP_SYSTEM_ALLOCATOR");
  if (system != nullptr && std::strcmp(system, "1") == 0) return false;
  static CachingCpuAllocator allocator;
  switch_cpu_allocator(&allocator);
  installed = true;
  ever_installed = true;
  return true;
}

void uninstall_cpu_allocator() {
  std::lock_guard<std::mutex> lock(install_mutex);
  if (!installed) return;
  switch_cpu_allocator(c10::GetDefaultCPUAllocator());
  installed = false;
  cache().release();
}

CpuAllocatorStats cpu_allocator_stats() {
  if (!ever_installed) return {};
  CpuAllocatorStats s = cache().stats();
  s.installed = installed;
  return s;
}

std::size_t release_cached_blocks() { return ever_installed ? cache().release() : 0; }

}  // namespace satcap
