// Test-only LD_PRELOAD library for the kill -9 test (tests/test_kill_resume.cpp): when
// SATCAP_TEST_SLOW_RENAME_MS is set, every rename of one of satcap's temporary files or folders
// (a name holding ".tmp-", runtime/atomic_file.h) first waits that many milliseconds. The temporary
// file then stays visible long enough for the test to see it and kill the process while a
// checkpoint or bundle is being written, before its rename. Nothing else changes.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <ctime>

namespace {

long slow_ms() {
  static const long ms = [] {
    const char* v = std::getenv("SATCAP_TEST_SLOW_RENAME_MS");
    return v ? std::atol(v) : 0L;
  }();
  return ms;
}

void maybe_wait(const char* from) {
  const long ms = slow_ms();
  if (ms <= 0 || !from || !std::strstr(from, ".tmp-")) return;
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

}  // namespace

extern "C" int rename(const char* from, const char* to) {
  using Fn = int (*)(const char*, const char*);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "rename"));
  maybe_wait(from);
  return real(from, to);
}

extern "C" int renameat(int from_dir, const char* from, int to_dir, const char* to) {
  using Fn = int (*)(int, const char*, int, const char*);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "renameat"));
  maybe_wait(from);
  return real(from_dir, from, to_dir, to);
}

extern "C" int renameat2(int from_dir, const char* from, int to_dir, const char* to, unsigned flags) {
  using Fn = int (*)(int, const char*, int, const char*, unsigned);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "renameat2"));
  maybe_wait(from);
  return real(from_dir, from, to_dir, to, flags);
}
