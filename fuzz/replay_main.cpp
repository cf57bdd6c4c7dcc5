// satcap_fuzz_replay: feeds files to the fuzz targets through the ordinary build (no libFuzzer), for
// the tests fuzz_replay_<target>: every seed (fuzz/corpus/<target>) and every kept finding
// (fuzz/regressions/<target>) must be accepted or refused with satcap::Error; another exception,
// a crash or a hang fails the test.
//
//   satcap_fuzz_replay [--require-accepted] [-v] TARGET PATH... [--optional PATH]...
//   satcap_fuzz_replay --list
// Folders are read recursively, in sorted order; a PATH after --optional may be missing (the
// regressions folder of a target without findings).
//
// A file ending in .gz is decompressed first (a finding too large to commit as it is, such as JSON
// nested 100,000 levels deep). An input running longer than SATCAP_FUZZ_REPLAY_TIMEOUT seconds
// (default 60) is a hang: the driver names it and exits 1. --require-accepted fails the run when no
// input was accepted: the seeds must still reach the end of the parser, or the target tests nothing.
#include <signal.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <cxxabi.h>

#include "fuzz_target.h"

namespace fs = std::filesystem;

namespace {

char g_current[4096] = "";  // the input being run, for the watchdog's message

void on_alarm(int) {
  const char head[] = "satcap_fuzz_replay: HANG: still running after the time limit: ";
  ssize_t ignored = ::write(2, head, sizeof head - 1);
  ignored = ::write(2, g_current, std::strlen(g_current));
  ignored = ::write(2, "\n", 1);
  (void)ignored;
  ::_exit(1);
}

std::string read_bytes(const fs::path& path) {
  if (path.extension() == ".gz") {
    gzFile in = ::gzopen(path.c_str(), "rb");
    if (in == nullptr) throw std::runtime_error(path.string() + ": cannot open");
    std::string out;
    char buf[1 << 16];
    int n;
    while ((n = ::gzread(in, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    const bool failed = n < 0;
    ::gzclose(in);
    if (failed) throw std::runtime_error(path.string() + ": not a gzip file");
    return out;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot open");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<fs::path> expand(const std::vector<std::string>& args) {
  std::vector<fs::path> files;
  bool optional = false;
  for (const auto& a : args) {
    if (a == "--optional") {
      optional = true;
      continue;
    }
    if (std::exchange(optional, false) && !fs::exists(a)) continue;
    if (fs::is_directory(a)) {
      std::vector<fs::path> found;
      for (const auto& e : fs::recursive_directory_iterator(a))
        if (e.is_regular_file() && e.path().filename().string()[0] != '.') found.push_back(e.path());
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(a)) {
      files.push_back(a);
    } else {
      std::cerr << "satcap_fuzz_replay: " << a << ": no such file or folder\n";
      std::exit(2);
    }
  }
  return files;
}

std::string current_exception_type() {
  const std::type_info* t = abi::__cxa_current_exception_type();
  if (t == nullptr) return "?";
  int status = 0;
  char* name = abi::__cxa_demangle(t->name(), nullptr, nullptr, &status);
  std::string s = status == 0 && name ? name : t->name();
  std::free(name);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  bool require_accepted = false, verbose = false;
  while (!args.empty() && args.front().rfind("-", 0) == 0) {
    if (args.front() == "--list") {
      for (const auto& [name, run] : satcap::fuzz::targets()) std::cout << name << "\n";
      return 0;
    }
    if (args.front() == "--require-accepted") require_accepted = true;
    else if (args.front() == "-v") verbose = true;
    else {
      std::cerr << "satcap_fuzz_replay: unknown option " << args.front() << "\n";
      return 2;
    }
    args.erase(args.begin());
  }
  if (args.size() < 2) {
    std::cerr << "usage: satcap_fuzz_replay [--require-accepted] [-v] TARGET PATH... [--optional PATH]...\n       satcap_fuzz_replay --list\n";
    return 2;
  }
  const auto& targets = satcap::fuzz::targets();
  auto it = targets.find(args[0]);
  if (it == targets.end()) {
    std::cerr << "satcap_fuzz_replay: no target '" << args[0] << "' (--list names them)\n";
    return 2;
  }
  const std::vector<fs::path> files = expand({args.begin() + 1, args.end()});
  if (files.empty()) {
    std::cerr << "satcap_fuzz_replay: no inputs\n";
    return 2;
  }
  const char* limit_env = std::getenv("SATCAP_FUZZ_REPLAY_TIMEOUT");
  const unsigned limit = limit_env ? static_cast<unsigned>(std::strtoul(limit_env, nullptr, 10)) : 60;
  ::signal(SIGALRM, on_alarm);

  std::size_t accepted = 0, refused = 0, failed = 0;
  for (const auto& file : files) {
    std::snprintf(g_current, sizeof g_current, "%s", file.c_str());
    const std::string bytes = read_bytes(file);
    const auto* data = reinterpret_cast<const std::uint8_t*>(bytes.data());
    ::alarm(limit);
    try {
      std::string refusal;
      const bool ok = satcap::fuzz::run_target(it->second, data, bytes.size(), &refusal);
      (ok ? accepted : refused)++;
      if (verbose) std::cout << (ok ? "accepted " : "refused  ") << file.string() << (ok ? "" : ": " + refusal) << "\n";
    } catch (const std::exception& e) {
      ++failed;
      std::cerr << "FAIL " << file.string() << ": " << current_exception_type() << ": " << e.what() << "\n";
    } catch (...) {
      ++failed;
      std::cerr << "FAIL " << file.string() << ": " << current_exception_type() << "\n";
    }
    ::alarm(0);
  }
  std::cout << args[0] << ": " << files.size() << " inputs: " << accepted << " accepted, " << refused
            << " refused with satcap::Error, " << failed << " failed\n";
  if (require_accepted && accepted == 0) {
    std::cerr << "satcap_fuzz_replay: no input was accepted; the seeds no longer reach the end of the parser\n";
    return 1;
  }
  return failed == 0 ? 0 : 1;
}
