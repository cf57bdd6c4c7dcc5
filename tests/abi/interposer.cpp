// A stand-in for an official LibTorch 2.x library in one respect: it exports its own definition of
// std::filesystem::remove_all, as those binaries export their statically linked copy of
// libstdc++'s std::filesystem (pytorch/pytorch issue 133437). Linked into the link-order probes
// (probe.cpp) ahead of libstdc++, it takes the calls unless libstdc++ is searched first.
#include <cstdint>
#include <filesystem>

namespace std::filesystem {
std::uintmax_t remove_all(const path&) { return 4242; }  // never removes anything
}  // namespace std::filesystem
