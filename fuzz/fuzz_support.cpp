#include "fuzz_target.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <system_error>

#include "satcap/runtime/error.h"

#include "runtime/sanitizers.h"

namespace fs = std::filesystem;

namespace satcap::fuzz {
namespace {

std::map<std::string, TargetFunction>& table() {
  static std::map<std::string, TargetFunction> t;
  return t;
}

struct Scratch {
  fs::path dir;
  Scratch() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/satcap-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("satcap fuzz: mkdtemp");
      std::abort();
    }
    dir = pattern;
  }
  ~Scratch() {
    if (const char* keep = std::getenv("SATCAP_FUZZ_KEEP_SCRATCH"); keep && *keep == '1') {
      std::fprintf(stderr, "satcap fuzz: scratch folder kept: %s\n", dir.c_str());
      return;
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

#ifdef SATCAP_ASAN
// read_image_rgb points file descriptor 2 at a temporary file while OpenCV decodes (to keep the
// codecs' chatter off the terminal): a sanitizer report written then would be lost with it. The
// reports go to a copy of the original standard error instead.
const bool report_fd_kept = [] {
  __sanitizer_set_report_fd(reinterpret_cast<void*>(static_cast<std::intptr_t>(::dup(2))));
  return true;
}();
#endif

}  // namespace

Registration::Registration(const char* name, TargetFunction run) { table()[name] = run; }

const std::map<std::string, TargetFunction>& targets() { return table(); }

bool run_target(TargetFunction run, const std::uint8_t* data, std::size_t size, std::string* refusal) {
  try {
    run(data, size);
    return true;
  } catch (const satcap::Error& e) {
    if (refusal) *refusal = e.what();
    return false;  // a clean refusal
  }
}

const fs::path& scratch() {
  static Scratch s;
  return s.dir;
}

fs::path write_input(const std::string& name, std::string_view bytes) {
  const fs::path path = scratch() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::perror(("satcap fuzz: cannot write " + path.string()).c_str());
    std::abort();
  }
  return path;
}

fs::path write_input(const std::string& name, const std::uint8_t* data, std::size_t size) {
  return write_input(name, std::string_view(reinterpret_cast<const char*>(data), size));
}

fs::path fresh_folder(const std::string& name) {
  const fs::path dir = scratch() / name;
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  return dir;
}

std::vector<std::string_view> sections(const std::uint8_t* data, std::size_t size, std::size_t count) {
  std::vector<std::string_view> out(count);
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t nul = i + 1 < count ? rest.find('\0') : std::string_view::npos;
    out[i] = rest.substr(0, nul);
    if (nul == std::string_view::npos) break;
    rest.remove_prefix(nul + 1);
  }
  return out;
}

}  // namespace satcap::fuzz
