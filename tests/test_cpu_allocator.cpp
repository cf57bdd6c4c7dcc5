// satcap's CPU allocator (satcap/runtime/cpu_allocator.h): large tensors from a cache of mapped blocks whose
// total stays within 1.25x the peak live total; everything else through c10::alloc_cpu.
#include "testing.h"

#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "satcap/runtime/cpu_allocator.h"

using namespace satcap;

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

bool aligned64(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; }

void check_accounting(const CpuAllocatorStats& s) {
  REQUIRE(s.mapped_bytes == s.live_bytes + s.cached_bytes);
  REQUIRE(s.mapped_bytes <= s.bound_bytes);
  REQUIRE(s.bound_bytes == s.peak_live_bytes + s.peak_live_bytes / 4);
}

}  // namespace

TEST_CASE("large CPU tensors come from the block cache and a freed block is reused", "[allocator]") {
  REQUIRE(install_cpu_allocator());
  REQUIRE(cpu_allocator_stats().installed);
  release_cached_blocks();  // no block of an earlier test in this process fits the request below
  const CpuAllocatorStats before = cpu_allocator_stats();
  const int64_t n = 777'777;  // floats, about 3 MiB
  void* first = nullptr;
  {
    at::Tensor t = at::empty({n}, at::kFloat);
    first = t.data_ptr();
    REQUIRE(aligned64(first));
    t.fill_(1.5f);
    REQUIRE(t.sum().item<double>() == Approx(1.5 * n));
    const CpuAllocatorStats s = cpu_allocator_stats();
    REQUIRE(s.live_bytes >= before.live_bytes + n * sizeof(float));
    REQUIRE(s.misses == before.misses + 1);
    check_accounting(s);
  }
  const CpuAllocatorStats freed = cpu_allocator_stats();
  REQUIRE(freed.live_bytes == before.live_bytes);
  REQUIRE(freed.cached_bytes >= n * sizeof(float));
  {
    at::Tensor u = at::empty({n}, at::kFloat);
    REQUIRE(u.data_ptr() == first);
    REQUIRE(cpu_allocator_stats().hits == freed.hits + 1);
  }
  // A request under 2/3 of the only cached block of its size range gets a block of its own.
  {
    at::Tensor big = at::empty({8 * static_cast<int64_t>(kMiB)}, at::kByte);
    void* big_data = big.data_ptr();
    big.reset();
    at::Tensor small = at::empty({4 * static_cast<int64_t>(kMiB)}, at::kByte);
    REQUIRE(small.data_ptr() != big_data);
  }
  // Tensors under kLargeBlockBytes do not touch the cache.
  const CpuAllocatorStats mid = cpu_allocator_stats();
  {
    at::Tensor small = at::ones({1000}, at::kFloat);
    REQUIRE(aligned64(small.data_ptr()));
    REQUIRE(small.sum().item<float>() == 1000.0f);
  }
  const CpuAllocatorStats end = cpu_allocator_stats();
  REQUIRE(end.hits + end.misses == mid.hits + mid.misses);
  check_accounting(end);
}

TEST_CASE("the block cache never maps more than 1.25x the peak live total, however sizes grow", "[allocator]") {
  REQUIRE(install_cpu_allocator());
  const CpuAllocatorStats before = cpu_allocator_stats();
  REQUIRE(release_cached_blocks() == before.cached_bytes);
  REQUIRE(cpu_allocator_stats().cached_bytes == 0);
  // Batches whose tensors grow step by step (longer captions), freed at each step's end: kept
  // without limit, every size ever met would stay mapped.
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> jitter(0, 255);
  for (int step = 0; step < 60; ++step) {
    std::vector<at::Tensor> live;
    for (int k = 0; k < 6; ++k) {
      const int64_t bytes = static_cast<int64_t>((1 + k) * kMiB + step * 64 * 1024 + jitter(rng) * 1024);
      live.push_back(at::empty({bytes}, at::kByte));
      live.back().fill_(static_cast<uint8_t>(step));
      check_accounting(cpu_allocator_stats());
    }
    for (const auto& t : live) REQUIRE(t[t.numel() - 1].item<uint8_t>() == static_cast<uint8_t>(step));
  }
  const CpuAllocatorStats after = cpu_allocator_stats();
  check_accounting(after);
  REQUIRE(after.live_bytes == before.live_bytes);
  REQUIRE(after.unmapped > before.unmapped);  // the bound was enforced, not merely never reached
  REQUIRE(release_cached_blocks() == after.cached_bytes);
  REQUIRE(cpu_allocator_stats().cached_bytes == 0);
}

TEST_CASE("raw allocations of every size go through one deleter", "[allocator]") {
  REQUIRE(install_cpu_allocator());
  c10::Allocator* allocator = c10::GetCPUAllocator();
  REQUIRE(allocator->raw_deleter() != nullptr);
  const CpuAllocatorStats before = cpu_allocator_stats();
  for (std::size_t n : {std::size_t{1}, std::size_t{1000}, kLargeBlockBytes - 64, kLargeBlockBytes, 5 * kMiB + 3}) {
    void* p = allocator->raw_allocate(n);
    REQUIRE(p != nullptr);
    REQUIRE(aligned64(p));
    std::memset(p, 0xab, n);
    REQUIRE(static_cast<unsigned char*>(p)[n - 1] == 0xab);
    allocator->raw_deallocate(p);
  }
  REQUIRE(allocator->raw_allocate(0) == nullptr);
  allocator->raw_deallocate(nullptr);
  REQUIRE(cpu_allocator_stats().live_bytes == before.live_bytes);
}

TEST_CASE("the block cache serves several threads at once", "[allocator]") {
  REQUIRE(install_cpu_allocator());
  const CpuAllocatorStats before = cpu_allocator_stats();
  std::vector<std::thread> threads;
  std::vector<int> wrong(4, 0);
  for (int id = 0; id < 4; ++id) {
    threads.emplace_back([id, &wrong] {
      std::mt19937 rng(id);
      std::uniform_int_distribution<int64_t> floats(kLargeBlockBytes / 4, 4 * kMiB / 4);
      for (int i = 0; i < 200; ++i) {
        at::Tensor t = at::empty({floats(rng)}, at::kFloat);
        float* d = t.data_ptr<float>();
        const int64_t last = t.numel() - 1;
        d[0] = static_cast<float>(id);
        d[last] = static_cast<float>(i);
        std::this_thread::yield();
        if (d[0] != static_cast<float>(id) || d[last] != static_cast<float>(i)) ++wrong[id];
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int w : wrong) REQUIRE(w == 0);
  const CpuAllocatorStats after = cpu_allocator_stats();
  REQUIRE(after.live_bytes == before.live_bytes);
  REQUIRE(after.hits + after.misses == before.hits + before.misses + 800);
  check_accounting(after);
}

TEST_CASE("SATCAP_SYSTEM_ALLOCATOR=1 keeps LibTorch's allocator, and uninstalling restores it", "[allocator]") {
  REQUIRE(install_cpu_allocator());
  c10::Allocator* ours = c10::GetCPUAllocator();
  at::Tensor kept = at::empty({static_cast<int64_t>(2 * kMiB)}, at::kByte);  // from the cache
  uninstall_cpu_allocator();
  REQUIRE_FALSE(cpu_allocator_stats().installed);
  REQUIRE(c10::GetCPUAllocator() == c10::GetDefaultCPUAllocator());
  const CpuAllocatorStats before = cpu_allocator_stats();
  {
    at::Tensor theirs = at::empty({static_cast<int64_t>(2 * kMiB)}, at::kByte);
    theirs.fill_(1);
  }
  REQUIRE(cpu_allocator_stats().hits + cpu_allocator_stats().misses == before.hits + before.misses);
  kept.reset();  // a block of the cache's, freed after the switch, goes back to it
  REQUIRE(cpu_allocator_stats().live_bytes + 2 * kMiB <= before.live_bytes + 64 * 1024);
  REQUIRE(::setenv("SATCAP_SYSTEM_ALLOCATOR", "1", 1) == 0);
  const bool installed_anyway = install_cpu_allocator();
  ::unsetenv("SATCAP_SYSTEM_ALLOCATOR");
  REQUIRE_FALSE(installed_anyway);
  REQUIRE(c10::GetCPUAllocator() == c10::GetDefaultCPUAllocator());
  REQUIRE(install_cpu_allocator());
  REQUIRE(c10::GetCPUAllocator() == ours);
}
