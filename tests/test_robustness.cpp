// Hostile inputs found by using satcap as a careless or malicious user would: each case failed
// (hung, crashed with exit 1, printed a wrong message, or left a misleading data set) before the
// fix in the library it names. The library is called directly where it can be (fast); the binary
// only where the exit code or the order of work is the point.
#include "testing.h"

#include <sys/stat.h>

#include <ATen/ATen.h>

#include <filesystem>
#include <string>

#include "satcap/data/dataset.h"
#include "satcap/data/encoded_features.h"
#include "satcap/data/image.h"
#include "satcap/data/scenes.h"
#include "satcap/model/vocab.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/runtime.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace satcap;

TEST_CASE("absurd thread counts are refused instead of starting thousands of threads", "[robust]") {
  // Before: --threads 100000 spent minutes creating OpenMP threads (a hang).
  REQUIRE_THROWS_AS(validate_threads(-1), UsageError);
  REQUIRE_THROWS_WITH(validate_threads(max_threads() + 1), Catch::Contains("--threads"));
  REQUIRE_THROWS_AS(configure_threads(100000), UsageError);
  REQUIRE_NOTHROW(validate_threads(0));
  REQUIRE_NOTHROW(validate_threads(max_threads()));
  SceneOptions scenes;
  scenes.out_dir = "unused";
  scenes.threads = 100000;
  REQUIRE_THROWS_AS(validate(scenes), UsageError);
  // The command: exit 2 and the library's message (not CLI11's range up to 1.8e308).
  auto r = run_satcap({"info", "--threads", "100000"});
  REQUIRE(r.exit_code == 2);
  REQUIRE_THAT(r.err, Catch::Contains("--threads 100000"));
  configure_threads(0);
}

TEST_CASE("a folder given as an input with no images in it is reported, not skipped silently", "[robust]") {
  const fs::path dir = fresh_temp_dir("robust_empty_folder");
  fs::create_directories(dir / "x.jpg");  // a folder named like an image
  REQUIRE_THROWS_WITH(expand_image_inputs({(dir / "x.jpg").string()}), Catch::Contains("x.jpg") && Catch::Contains("no images"));
}

TEST_CASE("encoded features refuse a folder as --out with its name, before any work", "[robust]") {
  const fs::path dir = fresh_temp_dir("robust_features_out");
  REQUIRE_THROWS_AS(check_encoded_features_path(dir), OutputError);
  REQUIRE_THROWS_WITH(check_encoded_features_path(dir / "missing" / "f.bin"), Catch::Contains("missing"));
  REQUIRE_NOTHROW(check_encoded_features_path(dir / "f.bin"));
  REQUIRE(fs::is_empty(dir));  // the probe leaves nothing behind
  EncodedFeatures data{at::zeros({1, 4, 2}), {"a.jpg"}, nlohmann::json::object()};
  // Before: "error: DIR: Success" after the whole run.
  REQUIRE_THROWS_WITH(save_encoded_features(dir, data), Catch::Contains("folder") && !Catch::Contains("Success"));
  // The command checks --out first: nothing is encoded (no line on stdout) when it cannot be written.
  auto r = run_satcap({"-q", "encode", (source_dir() / "datasets/samples/dog.jpg").string(), "--out", dir.string()});
  REQUIRE(r.exit_code == 5);
  REQUIRE(r.out.empty());
  REQUIRE_THAT(r.err, Catch::Contains(dir.string()));
}

TEST_CASE("scenes --force that fails half-way leaves no old captions.json claiming a complete data set", "[robust]") {
  const fs::path dir = fresh_temp_dir("robust_scenes_force");
  SceneOptions o;
  o.out_dir = dir.string();
  o.images = 3;
  o.size = 64;
  o.threads = 1;
  generate_scenes(o);
  REQUIRE(fs::exists(dir / "captions.json"));
  // Something in the way of the new run (as a full disk would be): a non-empty folder where an
  // image goes. The run must fail, and the folder must not look like a complete data set.
  fs::remove(dir / "images" / "scene_000002.png");
  fs::create_directories(dir / "images" / "scene_000002.png" / "blocker");
  o.force = true;
  o.seed = 2;
  REQUIRE_THROWS_AS(generate_scenes(o), OutputError);
  REQUIRE_FALSE(fs::exists(dir / "captions.json"));
  REQUIRE_FALSE(fs::exists(dir / "dataset.json"));
}

TEST_CASE("JSON inputs that are folders or FIFOs are refused by name instead of crashing or blocking", "[robust]") {
  const fs::path dir = fresh_temp_dir("robust_json_inputs");
  const fs::path fifo = dir / "fifo.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  // Before: load_dataset and Vocabulary::load opened the FIFO and waited forever for a writer.
  REQUIRE_THROWS_WITH(load_dataset(fifo.string()), Catch::Contains("fifo.json") && Catch::Contains("regular"));
  REQUIRE_THROWS_AS(Vocabulary::load(fifo), ModelError);
  REQUIRE_THROWS_AS(Vocabulary::load(dir), ModelError);
  // Before: score --results FOLDER ended with exit 1 ("basic_filebuf::underflow").
  fs::create_directories(dir / "res");
  write_text_file(dir / "ann.json", R"({"annotations": [{"image_id": 1, "caption": "a red square"}]})");
  auto r = run_satcap({"-q", "score", "--results", (dir / "res").string(), "--annotations", (dir / "ann.json").string()});
  REQUIRE(r.exit_code == 3);
  REQUIRE_THAT(r.err, Catch::Contains("res"));
  auto f = run_satcap({"-q", "score", "--results", fifo.string(), "--annotations", (dir / "ann.json").string()});
  REQUIRE(f.exit_code == 3);
  REQUIRE_THAT(f.err, Catch::Contains("fifo.json"));
}
