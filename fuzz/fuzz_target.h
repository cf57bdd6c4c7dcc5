// One fuzz target per file in fuzz/targets/: a parser of outside input fed arbitrary bytes.
//
//   SATCAP_FUZZ_TARGET(vocab) {
//     Vocabulary::load(satcap::fuzz::write_input("vocab.json", data, size));
//   }
//
// The body may return normally (the input was accepted) or throw satcap::Error (the input was
// refused cleanly, the contract of every reader). Anything else is a finding: another exception
// type, a crash, a sanitizer report, a hang or an allocation past the limits.
//
// The same file builds two ways (fuzz/CMakeLists.txt):
//   - with -DSATCAP_FUZZ=ON and clang, as a libFuzzer executable (build-fuzz/fuzz/fuzz_<name>),
//     which tools/fuzz.sh runs; an exception other than satcap::Error escapes the entry point and
//     aborts, which libFuzzer reports as a crash and saves the input;
//   - in every build with the tests, into satcap_fuzz_replay, which feeds the committed seeds
//     (fuzz/corpus/<name>) and kept findings (fuzz/regressions/<name>) to each target through the
//     ordinary compiler: the ctest tests fuzz_replay_<name> (fuzz/replay_main.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace satcap::fuzz {

using TargetFunction = void (*)(const std::uint8_t* data, std::size_t size);

// Registers a target by name (the replay driver's table; libFuzzer builds have one target each).
struct Registration {
  Registration(const char* name, TargetFunction run);
};

// The registered targets by name.
const std::map<std::string, TargetFunction>& targets();

// Runs `run` on the input; true when it returned (accepted), false when it threw satcap::Error
// (refused; its message in *refusal when given). Every other exception propagates.
bool run_target(TargetFunction run, const std::uint8_t* data, std::size_t size, std::string* refusal = nullptr);

// A private scratch folder of this process (made at first use under $TMPDIR, removed at exit
// unless SATCAP_FUZZ_KEEP_SCRATCH=1).
const std::filesystem::path& scratch();

// Writes the bytes to scratch()/name (replacing it) and returns the path.
std::filesystem::path write_input(const std::string& name, std::string_view bytes);
std::filesystem::path write_input(const std::string& name, const std::uint8_t* data, std::size_t size);

// A fresh, empty folder scratch()/name (its earlier content removed).
std::filesystem::path fresh_folder(const std::string& name);

// A target that reads several files takes them from one input: the sections between NUL bytes
// (JSON and text files never hold a raw NUL). Missing sections are empty.
std::vector<std::string_view> sections(const std::uint8_t* data, std::size_t size, std::size_t count);

}  // namespace satcap::fuzz

#define SATCAP_FUZZ_BODY(name) \
  static void satcap_fuzz_##name([[maybe_unused]] const std::uint8_t* data, [[maybe_unused]] std::size_t size)

#ifdef SATCAP_LIBFUZZER
#define SATCAP_FUZZ_TARGET(name)                                                      \
  SATCAP_FUZZ_BODY(name);                                                             \
  extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { \
    satcap::fuzz::run_target(satcap_fuzz_##name, data, size);                         \
    return 0;                                                                         \
  }                                                                                   \
  SATCAP_FUZZ_BODY(name)
#else
#define SATCAP_FUZZ_TARGET(name)                                                                   \
  SATCAP_FUZZ_BODY(name);                                                                          \
  static const satcap::fuzz::Registration satcap_fuzz_registration_##name{#name, satcap_fuzz_##name}; \
  SATCAP_FUZZ_BODY(name)
#endif
