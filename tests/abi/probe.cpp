// Asks the dynamic linker which object provides std::filesystem::remove_all to this program
// (satcap/runtime/abi_check.h) and exits 0 when it is the standard library, 1 otherwise. Built twice
// against tests/abi/interposer.cpp, a library that exports its own remove_all: once linked the way
// satcap's executables are (libstdc++ first: must pass) and once without it (must fail, which shows
// that the check detects the problem it guards against).
#include <cstdio>

#include "satcap/runtime/abi_check.h"

int main() {
  const std::string provider = satcap::filesystem_provider();
  const bool ok = satcap::filesystem_from_standard_library();
  std::printf("std::filesystem::remove_all is provided by %s: %s\n", provider.empty() ? "?" : provider.c_str(),
              ok ? "the standard library" : "NOT the standard library");
  return ok ? 0 : 1;
}
