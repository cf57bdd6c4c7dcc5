// Injected faults (issue 19, "Faults"): a full disk during every writer (RLIMIT_FSIZE, SIGXFSZ
// ignored: the write that crosses the limit fails with EFBIG as on a full disk), a read-only output
// folder, an input that vanishes after the run listed it, NaN in a feature store. Each must give a
// clear error naming the file, the right exit code, and lose nothing written earlier: the old
// output stays, no temporary file is left. docs/hardening.md lists them.
#include "testing.h"

#include <unistd.h>

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "satcap/data/feature_store.h"
#include "satcap/runtime/error.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace satcap;

namespace {

std::string dog() { return (source_dir() / "datasets/samples/dog.jpg").string(); }

std::vector<std::string> temporaries_in(const fs::path& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) out.push_back(e.path().string());
  return out;
}

CommandResult limited(const std::vector<std::string>& args, unsigned long long bytes) {
  RunOptions o;
  o.file_size_limit = bytes;
  return run_satcap_with(args, o);
}

// A small scenes data set with its features prepared, once per process (ctest runs each case in a
// process of its own, in parallel: each gets its own folder).
struct Prepared {
  fs::path dir;
  bool ok = false;
};
const Prepared& prepared() {
  static Prepared p = [] {
    Prepared r;
    r.dir = fresh_temp_dir("faults_prepared_" + std::to_string(getpid()));
    if (!fs::exists(source_dir() / "models" / "embedded" / "mobilenet_v2" / "model.json")) return r;
    r.ok = run_satcap({"scenes", "--out", (r.dir / "scenes").string(), "--images", "12", "--seed", "3"}).exit_code == 0 &&
           run_satcap({"-q", "prepare", "--data", (r.dir / "scenes").string(), "--out", (r.dir / "features").string()})
                   .exit_code == 0;
    return r;
  }();
  return p;
}

std::vector<std::string> train_args(const fs::path& out) {
  const fs::path d = prepared().dir;
  return {"-q", "train", "--data", (d / "scenes").string(), "--features", (d / "features").string(), "--out",
          out.string(), "--embed-dim", "8", "--attention-dim", "8", "--hidden-dim", "16", "--min-word-count", "1",
          "--batch", "8", "--no-eval-test"};
}

}  // namespace

TEST_CASE("a full disk during caption's, score's and scenes' writers: exit 5, the old file kept, no temporary", "[faults]") {
  const fs::path dir = fresh_temp_dir("faults_full_small_writers");
  const fs::path out = dir / "captions.json", page = dir / "page.html", per = dir / "per.json";
  for (const auto& f : {out, page, per}) write_text_file(f, "earlier output");
  struct Case {
    std::vector<std::string> args;
    unsigned long long limit;
    fs::path named;
  };
  const fs::path ann = dir / "ann.json", res = dir / "res.json";
  write_text_file(ann, R"({"annotations": [{"image_id": 1, "caption": "a dog on grass"}]})");
  write_text_file(res, R"([{"image_id": 1, "caption": "a dog"}])");
  const std::vector<Case> cases{
      {{"caption", dog(), "--format", "json", "--out", out.string()}, 16, out},
      {{"caption", dog(), "--html", page.string()}, 64, page},
      {{"caption", dog(), "--overlay-dir", (dir / "overlays").string()}, 4096, dir / "overlays"},
      {{"score", "--annotations", ann.string(), "--results", res.string(), "--per-image", per.string()}, 16, per},
      {{"scenes", "--out", (dir / "scenes").string(), "--images", "4"}, 2048, dir / "scenes"},
  };
  for (const auto& c : cases) {
    auto r = limited(c.args, c.limit);
    INFO(c.args[0] << " " << c.args.back() << ": " << r.err);
    CHECK(r.exit_code == 5);
    CHECK_THAT(r.err, Catch::Contains(c.named.string()));
    CHECK_THAT(r.err, !Catch::Contains("Exception raised from") && !Catch::Contains("terminate called"));
  }
  for (const auto& f : {out, page, per}) CHECK(read_text_file(f) == "earlier output");
  CHECK(temporaries_in(dir).empty());
}

TEST_CASE("a full disk during prepare and training: exit 5 naming the file, the checkpoint kept", "[faults]") {
  if (!prepared().ok) {
    WARN("models/embedded/mobilenet_v2 not imported (run tools/setup.sh): skipping");
    return;
  }
  const fs::path dir = fresh_temp_dir("faults_full_train");
  // The feature store: its data file cannot be made at its size.
  auto p = limited({"-q", "prepare", "--data", (prepared().dir / "scenes").string(), "--out", (dir / "store").string()},
                   64 * 1024);
  INFO(p.err);
  CHECK(p.exit_code == 5);
  CHECK_THAT(p.err, Catch::Contains((dir / "store").string()));

  // Training: a run of 2 steps, then a resume whose checkpoint cannot be written.
  auto args = train_args(dir / "run");
  args.insert(args.end(), {"--max-steps", "2"});
  auto first = run_satcap(args);
  INFO(first.err);
  REQUIRE(first.exit_code == 0);
  const std::string checkpoint = read_text_file(dir / "run/checkpoint.pt");
  const std::string weights = read_text_file(dir / "run/model/weights.pt");
  args = train_args(dir / "run");
  args.insert(args.end(), {"--max-steps", "4", "--resume"});
  auto full = limited(args, 8 * 1024);  // the checkpoint is ~850 kB
  INFO(full.err);
  CHECK(full.exit_code == 5);
  CHECK_THAT(full.err, Catch::Contains("checkpoint.pt"));
  CHECK(read_text_file(dir / "run/checkpoint.pt") == checkpoint);
  CHECK(read_text_file(dir / "run/model/weights.pt") == weights);
  CHECK(temporaries_in(dir / "run").empty());
  // And the run goes on once there is room.
  auto again = run_satcap(args);
  INFO(again.err);
  CHECK(again.exit_code == 0);
}

TEST_CASE("a read-only output folder: exit 5 naming it, before any work where it can be checked", "[faults]") {
  if (geteuid() != 0 && ::access("/", W_OK) == 0) {
    WARN("cannot make a folder read-only for this user: skipping");
    return;
  }
  const fs::path dir = fresh_temp_dir("faults_read_only");
  const fs::path ro = dir / "ro";
  fs::create_directories(ro);
  write_text_file(ro / "captions.json", "earlier output");
  fs::permissions(dir, fs::perms::all);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read | fs::perms::group_exec |
                          fs::perms::others_read | fs::perms::others_exec);
  RunOptions nobody;
  nobody.unprivileged = true;  // as root, permissions apply only to another user
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"caption", dog(), "--out", (ro / "captions.json").string()},
           {"caption", dog(), "--overlay-dir", (ro / "overlays").string()},
           {"encode", dog(), "--out", (ro / "f.pt").string()},
           {"scenes", "--out", (ro / "scenes").string(), "--images", "2"}}) {
    auto r = run_satcap_with(args, nobody);
    INFO(args[0] << " " << args.back() << ": " << r.err);
    CHECK(r.exit_code == 5);
    CHECK_THAT(r.err, Catch::Contains(ro.string()));
  }
  CHECK(read_text_file(ro / "captions.json") == "earlier output");
  fs::permissions(ro, fs::perms::owner_all);
}

TEST_CASE("an input that vanishes after the run listed it is named, the others are processed", "[faults]") {
  const fs::path dir = fresh_temp_dir("faults_vanished");
  fs::copy_file(dog(), dir / "a.jpg");
  fs::copy_file(dog(), dir / "b.jpg");
  write_text_file(dir / "list.txt", (dir / "a.jpg").string() + "\n" + (dir / "b.jpg").string() + "\n");
  fs::remove(dir / "b.jpg");  // listed, then gone
  auto r = run_satcap({"caption", (dir / "list.txt").string(), "--format", "json", "--out", (dir / "c.json").string()});
  INFO(r.err);
  CHECK(r.exit_code == 6);  // partial: the others captioned and written
  CHECK_THAT(r.err, Catch::Contains((dir / "b.jpg").string()));
  CHECK_THAT(read_text_file(dir / "c.json"), Catch::Contains("a.jpg"));

  if (!prepared().ok) return;
  // A data set whose image is deleted after it was made: loading it skips the image with a
  // warning naming it, and the others are prepared.
  fs::copy(prepared().dir / "scenes", dir / "scenes", fs::copy_options::recursive);
  fs::remove(dir / "scenes/images/scene_000002.png");
  auto p = run_satcap({"-q", "prepare", "--data", (dir / "scenes").string(), "--out", (dir / "store").string()});
  INFO(p.err);
  CHECK(p.exit_code == 0);
  CHECK_THAT(p.err, Catch::Contains("scene_000002.png") && Catch::Contains("skipped"));
  CHECK(FeatureStore::open(dir / "store").count(RowState::written) == 11);
}

TEST_CASE("NaN in a feature store is refused naming the file and the image", "[faults][store]") {
  const fs::path dir = fresh_temp_dir("faults_store_nan");
  FeatureStoreSpec spec;
  spec.encoder_identity = "enc";
  spec.encoder_description = {{"identity", "enc"}};
  spec.regions = 2;
  spec.dim = 3;
  spec.keys = {"img/0.jpg", "img/1.jpg"};
  {
    FeatureStore s = FeatureStore::create_or_resume(dir / "s", spec);
    s.write(0, at::ones({2, 3}));
    at::Tensor bad = at::ones({2, 3});
    bad[1][2] = std::numeric_limits<float>::quiet_NaN();
    s.write(1, bad);
    s.finalize();
  }
  FeatureStore s = FeatureStore::open(dir / "s");
  CHECK_NOTHROW(s.gather({0}));
  try {
    s.gather({0, 1});
    FAIL("NaN features were accepted");
  } catch (const InputError& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains("features.bin") && Catch::Contains("img/1.jpg"));
  }

  if (!prepared().ok) return;
  // Training on a store whose data file was damaged: exit 3 naming it, before any step.
  fs::copy(prepared().dir / "features", dir / "features", fs::copy_options::recursive);
  {
    std::string data = read_text_file(dir / "features/features.bin");
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (std::size_t i = 0; i + sizeof nan <= data.size(); i += 4096) std::memcpy(&data[i], &nan, sizeof nan);
    write_text_file(dir / "features/features.bin", data);
  }
  auto args = train_args(dir / "run");
  args[5] = (dir / "features").string();  // --features
  args.insert(args.end(), {"--max-steps", "2"});
  auto r = run_satcap(args);
  INFO(r.err);
  CHECK(r.exit_code == 3);
  CHECK_THAT(r.err, Catch::Contains("features.bin"));
}
