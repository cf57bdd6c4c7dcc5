// Built only with -DSATCAP_SANITIZE=address,... (tools/sanitize.sh): satcap's block cache of large
// tensors (lib/src/runtime/cpu_allocator.cpp) hides its blocks from ASan's malloc, so it poisons
// them itself. `clean` reuses cached blocks and writes every byte asked for (no report); `overrun`
// reads past the bytes asked for and `use_after_free` reads a block after its tensor freed it: both
// must be reported (ctest expects them to fail), or the poisoning does not work.
#include <c10/core/CPUAllocator.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "satcap/runtime/cpu_allocator.h"

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "clean";
  if (!satcap::install_cpu_allocator()) {
    std::puts("satcap's CPU allocator is not installed");
    return 2;
  }
  const std::size_t n = (std::size_t{4} << 20) + 100;  // a large block; its rounding is poisoned
  volatile char* kept = nullptr;
  for (int i = 0; i < 3; ++i) {
    c10::DataPtr p = c10::GetCPUAllocator()->allocate(n);
    char* d = static_cast<char*>(p.get());
    std::memset(d, i, n);  // every byte asked for is usable, in a reused (cached) block too
    if (mode == "overrun") std::printf("%d\n", static_cast<volatile char*>(d)[n + 8]);
    kept = d;
  }
  if (mode == "use_after_free") std::printf("%d\n", kept[0]);
  const auto stats = satcap::cpu_allocator_stats();
  std::printf("cache hits %llu, misses %llu\n", static_cast<unsigned long long>(stats.hits),
              static_cast<unsigned long long>(stats.misses));
  return stats.hits >= 2 ? 0 : 3;  // the blocks were reused (else `clean` proved nothing)
}
