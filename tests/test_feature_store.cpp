// The feature store: round trips, memory mapping, encoder identity, crash safety and resume.
// ATen first: through glog it defines a CHECK macro that aborts; Catch's CHECK must win.
#include "testing.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include "satcap/data/feature_store.h"
#include "satcap/runtime/error.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace satcap;

namespace {

FeatureStoreSpec make_spec(std::size_t rows, int n, int D, FeatureDtype dtype = FeatureDtype::float32,
                           const std::string& identity = "enc-A") {
  FeatureStoreSpec s;
  s.encoder_identity = identity;
  s.encoder_description = {{"identity", identity}, {"grid", {2, 2}}};
  s.regions = n;
  s.dim = D;
  s.dtype = dtype;
  for (std::size_t i = 0; i < rows; ++i) s.keys.push_back("img/" + std::to_string(i) + ".jpg");
  return s;
}

at::Tensor features_for(std::size_t rows, int n, int D) {
  at::manual_seed(7);
  return at::randn({static_cast<std::int64_t>(rows), n, D}) * 3;  // [rows, n, D]
}

std::vector<std::int64_t> all_rows(std::size_t n) {
  std::vector<std::int64_t> r(n);
  for (std::size_t i = 0; i < n; ++i) r[i] = static_cast<std::int64_t>(i);
  return r;
}

std::int64_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  std::int64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

bool mapped_in_process(const fs::path& file) {
  std::ifstream in("/proc/self/maps");
  std::string line;
  std::string name = fs::weakly_canonical(file).string();
  while (std::getline(in, line))
    if (line.find(name) != std::string::npos) return true;
  return false;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace

TEST_CASE("Feature store: float32 round trip is exact", "[store]") {
  fs::path dir = fresh_temp_dir("store_fp32") / "store";
  auto spec = make_spec(6, 4, 5);
  at::Tensor x = features_for(6, 4, 5);
  {
    FeatureStore s = FeatureStore::create_or_resume(dir, spec);
    CHECK_FALSE(s.complete());
    for (std::size_t r : {3, 0, 5, 1, 4, 2}) s.write(r, x[static_cast<std::int64_t>(r)]);
    s.finalize();
    CHECK(s.complete());
  }
  FeatureStore s = FeatureStore::open(dir, "enc-A");
  CHECK(s.complete());
  CHECK(s.size() == 6);
  CHECK(s.regions() == 4);
  CHECK(s.dim() == 5);
  CHECK(s.encoder_description()["grid"][0] == 2);
  CHECK(s.row_of("img/4.jpg") == std::optional<std::size_t>(4));
  CHECK_FALSE(s.row_of("nope").has_value());
  CHECK(s.count(RowState::written) == 6);
  at::Tensor g = s.gather(all_rows(6));
  CHECK(g.sizes() == x.sizes());
  CHECK(at::equal(g, x));
  at::Tensor some = s.gather({5, 5, 0});  // [3, n, D], repeats allowed
  CHECK(at::equal(some[0], x[5]));
  CHECK(at::equal(some[1], x[5]));
  CHECK(at::equal(some[2], x[0]));
  CHECK(s.gather({}).size(0) == 0);
  CHECK_THROWS_AS(s.gather({6}), InputError);
  CHECK_THROWS_AS(s.gather({-1}), InputError);
  CHECK_THROWS_AS(s.write(0, x[0]), OutputError);  // read-only
}

TEST_CASE("Feature store: float16 within half precision, half the disk", "[store]") {
  fs::path dir = fresh_temp_dir("store_fp16") / "store";
  auto spec = make_spec(3, 7, 9, FeatureDtype::float16);
  at::Tensor x = features_for(3, 7, 9);
  {
    FeatureStore s = FeatureStore::create_or_resume(dir, spec);
    for (std::size_t r = 0; r < 3; ++r) s.write(r, x[static_cast<std::int64_t>(r)]);
    s.finalize();
  }
  CHECK(fs::file_size(dir / "features.bin") == 3u * 7 * 9 * 2);
  FeatureStore s = FeatureStore::open(dir);
  CHECK(s.dtype() == FeatureDtype::float16);
  at::Tensor g = s.gather(all_rows(3));
  CHECK(g.scalar_type() == at::kFloat);
  CHECK(at::allclose(g, x, /*rtol=*/1e-3, /*atol=*/1e-4));
  CHECK(at::equal(g, x.to(at::kHalf).to(at::kFloat)));  // exactly the nearest half
  CHECK_THROWS_AS(FeatureStore::create_or_resume(fresh_temp_dir("store_fp16_wrong") / "s", make_spec(1, 2, 2)).write(0, at::zeros({3, 3})),
                  ModelError);
}

TEST_CASE("Feature store: opening maps the data instead of reading it", "[store]") {
  fs::path dir = fresh_temp_dir("store_mmap") / "store";
  const std::size_t rows = 96;
  const int n = 196, D = 448;  // 96 rows x 351 KB = 33 MB
  auto spec = make_spec(rows, n, D);
  {
    FeatureStore s = FeatureStore::create_or_resume(dir, spec);
    std::vector<float> row(static_cast<std::size_t>(n) * D);
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::size_t i = 0; i < row.size(); ++i) row[i] = static_cast<float>(r) + static_cast<float>(i % 97) * 0.01f;
      s.write(r, row.data());
    }
    s.finalize();
  }
  const std::int64_t file_bytes = static_cast<std::int64_t>(fs::file_size(dir / "features.bin"));
  REQUIRE(file_bytes > 30'000'000);
  std::int64_t before = rss_bytes();
  FeatureStore s = FeatureStore::open(dir);
  std::int64_t after_open = rss_bytes();
  CHECK(mapped_in_process(dir / "features.bin"));
  CHECK(after_open - before < file_bytes / 4);
  at::Tensor g = s.gather({10, 50});
  std::int64_t after_gather = rss_bytes();
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer's shadow memory and quarantine count in the resident set (9.1 MB here against
  // the 8.4 MB bound): only the mapping itself is checked under it.
  WARN("AddressSanitizer build: the resident-set bound after gather is not checked");
#else
  CHECK(after_gather - before < file_bytes / 4);
#endif
  CHECK(g[0][0][0].item<float>() == 10.0f);
  CHECK(g[1][195][447].item<float>() == Approx(50.0f + static_cast<float>((195 * 448 + 447) % 97) * 0.01f));
}

TEST_CASE("Feature store: another encoder's features are refused", "[store]") {
  fs::path dir = fresh_temp_dir("store_identity") / "store";
  {
    FeatureStore s = FeatureStore::create_or_resume(dir, make_spec(2, 2, 3));
    s.write(0, at::ones({2, 3}));
    s.write(1, at::ones({2, 3}));
    s.finalize();
  }
  std::string e = message_of([&] { FeatureStore::open(dir, "enc-B"); });
  CHECK_THAT(e, Catch::Contains("enc-A") && Catch::Contains("enc-B"));
  CHECK_THROWS_AS(FeatureStore::open(dir, "enc-B"), ModelError);
  CHECK_THROWS_AS(FeatureStore::create_or_resume(dir, make_spec(2, 2, 3, FeatureDtype::float32, "enc-B")), ModelError);
  CHECK_THROWS_AS(FeatureStore::create_or_resume(dir, make_spec(2, 2, 3, FeatureDtype::float16)), InputError);
  CHECK_THROWS_AS(FeatureStore::create_or_resume(dir, make_spec(3, 2, 3)), InputError);  // other keys
  CHECK_THROWS_AS(FeatureStore::create_or_resume(dir, make_spec(2, 2, 4)), InputError);  // other D
  CHECK_NOTHROW(FeatureStore::open(dir, "enc-A"));
  CHECK_NOTHROW(FeatureStore::open(dir));
}

TEST_CASE("Feature store: interrupted writing resumes and matches an uninterrupted run", "[store]") {
  fs::path base = fresh_temp_dir("store_resume");
  const std::size_t rows = 10;
  auto spec = make_spec(rows, 3, 4);
  at::Tensor x = features_for(rows, 3, 4);
  {  // uninterrupted
    FeatureStore s = FeatureStore::create_or_resume(base / "whole", spec);
    for (std::size_t r = 0; r < rows; ++r) s.write(r, x[static_cast<std::int64_t>(r)]);
    s.finalize();
  }
  {  // interrupted: rows 0-4 committed, row 5 written but never committed, then the "process dies"
    FeatureStore s = FeatureStore::create_or_resume(base / "resumed", spec);
    for (std::size_t r = 0; r < 5; ++r) s.write(r, x[static_cast<std::int64_t>(r)]);
    s.commit();
    s.write(5, x[5]);
  }
  // A half-written store never reads as complete.
  CHECK_THAT(message_of([&] { FeatureStore::open(base / "resumed"); }), Catch::Contains("incomplete"));
  {
    FeatureStore partial = FeatureStore::open(base / "resumed", "", /*allow_incomplete=*/true);
    CHECK_FALSE(partial.complete());
    CHECK(partial.count(RowState::written) == 5);
    CHECK(partial.state(5) == RowState::empty);  // not committed: redone
    CHECK_THROWS_AS(partial.gather({5}), InputError);
    CHECK(at::equal(partial.gather({4})[0], x[4]));
  }
  {
    FeatureStore s = FeatureStore::create_or_resume(base / "resumed", spec);
    CHECK(s.count(RowState::written) == 5);
    CHECK_THROWS_AS(s.finalize(), InputError);  // rows still missing
    for (std::size_t r = 0; r < rows; ++r)
      if (s.state(r) != RowState::written) s.write(r, x[static_cast<std::int64_t>(r)]);
    s.finalize();
  }
  FeatureStore a = FeatureStore::open(base / "whole"), b = FeatureStore::open(base / "resumed");
  CHECK(at::equal(a.gather(all_rows(rows)), b.gather(all_rows(rows))));
  CHECK(read_text_file(base / "whole/features.bin") == read_text_file(base / "resumed/features.bin"));
  CHECK(read_text_file(base / "whole/meta.json") == read_text_file(base / "resumed/meta.json"));
}

TEST_CASE("Feature store: failed rows, corruption, newer versions, foreign folders", "[store]") {
  fs::path base = fresh_temp_dir("store_bad");
  auto spec = make_spec(3, 2, 2);
  {
    FeatureStore s = FeatureStore::create_or_resume(base / "s", spec);
    s.write(0, at::ones({2, 2}));
    s.mark_failed(1);
    s.write(2, at::ones({1, 2, 2}));
    // A second writer is refused while this one holds the store.
    CHECK_THROWS_AS(FeatureStore::create_or_resume(base / "s", spec), OutputError);
    s.finalize();  // failed rows count as done
  }
  FeatureStore s = FeatureStore::open(base / "s");
  CHECK(s.state(1) == RowState::failed);
  CHECK_THAT(message_of([&] { s.gather({1}); }), Catch::Contains("img/1.jpg") && Catch::Contains("could not be read"));

  // Truncated data file.
  fs::copy(base / "s", base / "t");
  fs::resize_file(base / "t/features.bin", 10);
  CHECK_THAT(message_of([&] { FeatureStore::open(base / "t"); }), Catch::Contains("truncated"));
  // A newer format is refused with what to do.
  fs::copy(base / "s", base / "v");
  std::string meta = read_text_file(base / "v/meta.json");
  const std::string current = "\"format_version\": " + std::to_string(FeatureStore::format_version);
  REQUIRE(meta.find(current) != std::string::npos);
  meta.replace(meta.find(current), current.size(), "\"format_version\": 99");
  write_text_file(base / "v/meta.json", meta);
  CHECK_THAT(message_of([&] { FeatureStore::open(base / "v"); }), Catch::Contains("newer"));
  // Malformed meta.
  fs::copy(base / "s", base / "m");
  write_text_file(base / "m/meta.json", "{\"format\": \"satcap-feature-store\", ");
  CHECK_THROWS_AS(FeatureStore::open(base / "m"), InputError);
  // Not a store, and a non-empty folder that is not one.
  CHECK_THROWS_AS(FeatureStore::open(base / "nothing"), InputError);
  write_text_file(base / "other/notes.txt", "mine");
  CHECK_THROWS_AS(FeatureStore::create_or_resume(base / "other", spec), OutputError);
  CHECK(read_text_file(base / "other/notes.txt") == "mine");
  // Creation interrupted before meta.json: the leftovers are replaced.
  fs::create_directories(base / "leftover");
  write_text_file(base / "leftover/features.bin", "junk");
  CHECK_NOTHROW(FeatureStore::create_or_resume(base / "leftover", spec));
}

TEST_CASE("Feature store: gather throughput", "[.][store_bench]") {
  fs::path dir = fresh_temp_dir("store_bench") / "store";
  const std::size_t rows = 512;
  const int n = 196, D = 512;
  for (FeatureDtype dt : {FeatureDtype::float16, FeatureDtype::float32, FeatureDtype::float16, FeatureDtype::float32}) {
    fs::remove_all(dir);
    {
      FeatureStore s = FeatureStore::create_or_resume(dir, make_spec(rows, n, D, dt));
      std::vector<float> row(static_cast<std::size_t>(n) * D, 0.5f);
      for (std::size_t r = 0; r < rows; ++r) s.write(r, row.data());
      s.finalize();
    }
    FeatureStore s = FeatureStore::open(dir);
    std::vector<std::int64_t> batch(64);
    auto start = std::chrono::steady_clock::now();
    int batches = 0;
    for (int rep = 0; rep < 4; ++rep)
      for (std::size_t b = 0; b + 64 <= rows; b += 64, ++batches) {
        for (int i = 0; i < 64; ++i) batch[i] = static_cast<std::int64_t>((b + i * 7) % rows);
        at::Tensor g = s.gather(batch);
      }
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double mb = batches * 64.0 * n * D * 4 / 1e6;  // float32 MB delivered
    std::cout << to_string(dt) << ": gather " << batches << " batches of 64 x [" << n << ", " << D << "]: " << mb / sec
              << " MB/s of float32 output (" << batches * 64 / sec << " rows/s)\n";
  }
}
