// write_file_atomic's streaming form and the archives written through it (checkpoints, bundles).
#include "testing.h"

#include <signal.h>
#include <sys/resource.h>

#include <ATen/ATen.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "satcap/model/named_tensors.h"
#include "satcap/runtime/atomic_file.h"
#include "satcap/runtime/error.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace satcap;

namespace {

// Only `path` itself: no temporary file left beside it.
std::size_t entries_in(const fs::path& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

at::Tensor read_tensor(const fs::path& path, const std::string& key) {
  torch::serialize::InputArchive in;
  in.load_from(path.string());
  at::Tensor t;
  in.read(key, t);
  return t;
}

// Files written by this process may not grow past `bytes` while it lives: as a full disk would, the
// write that crosses it fails (EFBIG; SIGXFSZ ignored so the process is not killed).
struct FileSizeLimit {
  rlimit old{};
  void (*old_handler)(int) = nullptr;
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &old);
    old_handler = signal(SIGXFSZ, SIG_IGN);
    rlimit limited = old;
    limited.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &limited);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
  }
};

}  // namespace

TEST_CASE("a file produced piece by piece is written whole, or not at all", "[atomic]") {
  const fs::path dir = fresh_temp_dir("atomic_stream");
  const fs::path path = dir / "out.txt";
  write_file_atomic(path, [](const ByteSink& sink) {
    for (int i = 0; i < 1000; ++i) REQUIRE(sink("0123456789", 10));
  });
  REQUIRE(fs::file_size(path) == 10000);
  REQUIRE(read_text_file(path).substr(0, 20) == "01234567890123456789");
  // A producer that fails half-way: its exception comes through, the old file stays.
  REQUIRE_THROWS_WITH(write_file_atomic(path,
                                        [](const ByteSink& sink) {
                                          sink("partial", 7);
                                          throw std::runtime_error("producer gave up");
                                        }),
                      "producer gave up");
  REQUIRE(fs::file_size(path) == 10000);
  REQUIRE(entries_in(dir) == 1);
}

TEST_CASE("an archive is streamed into its file, and a full disk leaves the old file and no temporary", "[atomic]") {
  const fs::path dir = fresh_temp_dir("atomic_archive");
  const fs::path path = dir / "weights.pt";
  const at::Tensor first = at::arange(1'000'000, at::kFloat);  // 4 MB
  {
    torch::serialize::OutputArchive archive;
    archive.write("x", first);
    write_archive_atomic(path, archive);
  }
  REQUIRE(fs::file_size(path) > 4'000'000);
  REQUIRE(read_tensor(path, "x").equal(first));

  torch::serialize::OutputArchive second;
  second.write("x", at::ones({1'000'000}, at::kFloat));
  std::string what;  // OutputError's message; empty if nothing was thrown
  {
    FileSizeLimit limit(1 << 20);  // 1 MiB: the write fails a quarter of the way through
    try {
      write_archive_atomic(path, second);
    } catch (const OutputError& e) {
      what = e.what();
    }
  }
  REQUIRE_THAT(what, Catch::Contains(path.string()) && Catch::Contains("too large"));
  REQUIRE(read_tensor(path, "x").equal(first));
  REQUIRE(entries_in(dir) == 1);
}
