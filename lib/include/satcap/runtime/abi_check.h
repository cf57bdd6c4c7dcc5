// Which loaded object provides the C++ standard library's std::filesystem to satcap's code.
//
// Official LibTorch 2.x binaries export their own, statically linked copy of libstdc++'s
// std::filesystem (pytorch/pytorch issue 133437). The dynamic linker binds a call to the first
// object in the program's search order that defines the symbol; with libtorch before libstdc++.so
// there, satcap's std::filesystem::remove_all ran libtorch's copy, which crashed through a null
// pointer (seen on an H200 with PyTorch 2.11's LibTorch). satcap's executables therefore name
// libstdc++ first among their needed libraries (CMakeLists.txt: satcap_link_libstdcxx_first), so
// that the standard library's own definitions win for every std:: symbol, not only this one.
// This header tells where the symbol came from: `satcap info`, the tests and tools/gpu_check.sh
// check it. Header-only, so that the link-order probes in tests/abi need no other code.
#pragma once

#include <dlfcn.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace satcap {

// The path of the object that provides std::filesystem::remove_all(const path&) to the code that
// includes this header, as the dynamic linker bound it ("" when dladdr cannot tell).
inline std::string filesystem_provider() {
  using RemoveAll = std::uintmax_t (*)(const std::filesystem::path&);
  const RemoveAll function = &std::filesystem::remove_all;  // through the GOT: the bound definition
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(function), &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

// Whether that object is the C++ standard library (libstdc++ or libc++).
inline bool filesystem_from_standard_library() {
  const std::string name = std::filesystem::path(filesystem_provider()).filename().string();
  return name.rfind("libstdc++", 0) == 0 || name.rfind("libc++", 0) == 0;
}

}  // namespace satcap
