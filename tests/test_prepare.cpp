// prepare_features with a tiny fake encoder (2x2 grid of mean RGB): batching, resume, failures.
// ATen first: through glog it defines a CHECK macro that aborts; Catch's CHECK must win.
#include "testing.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "satcap/data/dataset.h"
#include "satcap/data/feature_store.h"
#include "satcap/data/prepare.h"
#include "satcap/model/encoder.h"
#include "satcap/runtime/error.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace satcap;

namespace {

// Average-pools each image into a 2x2 grid of 3-dim (RGB) features: [B, 4, 3].
class FakeEncoder : public Encoder {
 public:
  explicit FakeEncoder(std::string id = "fake-avgpool-2x2", int fail_after_batches = -1)
      : id_(std::move(id)), fail_after_(fail_after_batches) {}
  at::Tensor preprocess(const std::vector<cv::Mat>& images) const override {
    at::Tensor x = at::empty({static_cast<std::int64_t>(images.size()), 3, 8, 8});  // [B, 3, 8, 8]
    for (std::size_t i = 0; i < images.size(); ++i) {
      cv::Mat small;
      cv::resize(images[i], small, {8, 8}, 0, 0, cv::INTER_AREA);
      x[static_cast<std::int64_t>(i)].copy_(at::from_blob(small.data, {8, 8, 3}, at::kByte).permute({2, 0, 1}).to(at::kFloat) / 255);
    }
    return x;
  }
  at::Tensor forward(const at::Tensor& x) override {
    if (fail_after_ >= 0 && batches_ >= fail_after_) throw std::runtime_error("simulated crash");
    ++batches_;
    return at::adaptive_avg_pool2d(x, {2, 2}).flatten(2).transpose(1, 2).contiguous();  // [B, 4, 3]
  }
  int grid_rows() const override { return 2; }
  int grid_cols() const override { return 2; }
  int dim() const override { return 3; }
  std::string identity() const override { return id_; }
  nlohmann::json describe() const override { return {{"identity", id_}, {"grid", {2, 2}}}; }
  c10::Device device() const override { return c10::kCPU; }
  void to(c10::Device) override {}
  std::vector<at::Tensor> trainable_parameters() override { return {}; }
  void train(bool) override {}
  int batches() const { return batches_; }

 private:
  std::string id_;
  int fail_after_;
  int batches_ = 0;
};

// Seven images (one of them a corrupt file) in a COCO folder.
fs::path make_dataset(const std::string& name) {
  fs::path dir = fresh_temp_dir(name);
  nlohmann::json j{{"images", nlohmann::json::array()}, {"annotations", nlohmann::json::array()}};
  for (int i = 0; i < 7; ++i) {
    std::string file = "img" + std::to_string(i) + ".png";
    fs::create_directories(dir / "images");
    if (i == 3) {
      write_text_file(dir / "images" / file, "not a png at all");
    } else {
      cv::Mat m(12, 16, CV_8UC3, cv::Scalar(20 * i, 255 - 30 * i, 100));
      m(cv::Rect(0, 0, 8, 6)).setTo(cv::Scalar(255, 0, 0));
      REQUIRE(cv::imwrite((dir / "images" / file).string(), m));
    }
    j["images"].push_back({{"id", 100 + i}, {"file_name", file}});
    j["annotations"].push_back({{"id", i}, {"image_id", 100 + i}, {"caption", "picture number " + std::to_string(i)}});
  }
  write_text_file(dir / "captions.json", j.dump());
  return dir;
}

}  // namespace

TEST_CASE("prepare: encodes every image once, reports unreadable ones, resumes", "[prepare]") {
  fs::path dir = make_dataset("prepare_basic");
  Dataset d = load_dataset(dir.string());
  FakeEncoder enc;
  PrepareOptions o;
  o.batch_size = 2;
  std::vector<std::size_t> progress;
  o.progress = [&](std::size_t done, std::size_t) { progress.push_back(done); };
  PrepareSummary s = prepare_features(d, enc, (dir / "store").string(), o);
  CHECK(s.images == 7);
  CHECK(s.encoded == 6);
  CHECK(s.failed == 1);
  REQUIRE(s.failures.size() == 1);
  CHECK_THAT(s.failures[0], Catch::Contains("img3.png"));
  CHECK(enc.batches() == 4);  // batches of 2,2(one failed),2,1
  CHECK(progress.back() == 7);

  FeatureStore store = FeatureStore::open(dir / "store", "fake-avgpool-2x2");
  CHECK(store.complete());
  CHECK(store.state(*store.row_of("img3.png")) == RowState::failed);
  // Each row equals the encoder run alone on that image.
  for (int i : {0, 5, 6}) {
    std::string key = "img" + std::to_string(i) + ".png";
    at::Tensor alone = enc.forward(enc.preprocess({read_image_rgb(dir / "images" / key)}));
    at::Tensor stored = store.gather({static_cast<std::int64_t>(*store.row_of(key))});
    CHECK(at::allclose(stored, alone));
  }
  // A second run finds everything stored (the unreadable image is retried and fails again).
  FakeEncoder again;
  PrepareSummary s2 = prepare_features(d, again, (dir / "store").string(), o);
  CHECK(s2.already == 6);
  CHECK(s2.encoded == 0);
  CHECK(s2.failed == 1);
  // Another encoder's store is refused.
  FakeEncoder other("another-encoder");
  CHECK_THROWS_AS(prepare_features(d, other, (dir / "store").string(), o), ModelError);
  // Strict: the unreadable image is an error.
  o.strict = true;
  CHECK_THROWS_AS(prepare_features(d, enc, (dir / "strict").string(), o), InputError);
  o.strict = false;
  o.batch_size = 0;
  CHECK_THROWS_AS(prepare_features(d, enc, (dir / "bad").string(), o), UsageError);
  o.batch_size = 2;
  o.split = "test";
  CHECK_THROWS_AS(prepare_features(d, enc, (dir / "empty").string(), o), InputError);
}

TEST_CASE("prepare: an interrupted run resumes to the same store as an uninterrupted one", "[prepare]") {
  fs::path dir = make_dataset("prepare_resume");
  Dataset d = load_dataset(dir.string());
  PrepareOptions o;
  o.batch_size = 2;
  o.fp16 = true;
  FakeEncoder whole;
  prepare_features(d, whole, (dir / "whole").string(), o);

  FakeEncoder crashing("fake-avgpool-2x2", /*fail_after_batches=*/2);
  CHECK_THROWS(prepare_features(d, crashing, (dir / "resumed").string(), o));
  CHECK_THROWS_AS(FeatureStore::open(dir / "resumed"), InputError);  // incomplete
  FakeEncoder rest;
  PrepareSummary s = prepare_features(d, rest, (dir / "resumed").string(), o);
  // Two batches committed before the crash: rows 0-2 written, row 3 (unreadable) retried now.
  CHECK(s.already == 3);
  CHECK(s.encoded == 3);
  CHECK(s.failed == 1);
  FeatureStore a = FeatureStore::open(dir / "whole"), b = FeatureStore::open(dir / "resumed");
  CHECK(a.dtype() == FeatureDtype::float16);
  for (std::size_t r = 0; r < a.size(); ++r) {
    REQUIRE(a.state(r) == b.state(r));
    if (a.state(r) == RowState::written) CHECK(at::equal(a.gather({static_cast<std::int64_t>(r)}), b.gather({static_cast<std::int64_t>(r)})));
  }
  CHECK(read_text_file(dir / "whole/features.bin") == read_text_file(dir / "resumed/features.bin"));
}

TEST_CASE("satcap prepare: bad options and datasets fail before any encoder runs", "[prepare]") {
  fs::path dir = fresh_temp_dir("prepare_cli");
  CommandResult r = run_satcap({"prepare", "--data", dir.string(), "--out", (dir / "store").string(), "--batch", "0"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("--batch"));
  write_text_file(dir / "captions.json", "{\"images\": [], \"annotations\": [{\"image_id\": 1, \"caption\": 5}]}");
  r = run_satcap({"prepare", "--data", dir.string(), "--out", (dir / "store").string()});
  CHECK(r.exit_code == 3);
  CHECK_THAT(r.err, Catch::Contains("captions.json: annotations[0]: 'caption' is not a string"));
  CHECK_FALSE(fs::exists(dir / "store"));
}

TEST_CASE("prepare: a store made from other images under the same names is re-encoded, not kept", "[prepare][harden]") {
  fs::path dir = make_dataset("prepare_stale");
  FakeEncoder enc;
  PrepareOptions o;
  o.batch_size = 2;
  {
    Dataset d = load_dataset(dir.string());
    PrepareSummary s = prepare_features(d, enc, (dir / "store").string(), o);
    REQUIRE(s.encoded == 6);
  }
  // Another data set under the same file names: img5.png now shows something else.
  cv::Mat other(12, 16, CV_8UC3, cv::Scalar(0, 0, 255));
  REQUIRE(cv::imwrite((dir / "images" / "img5.png").string(), other));
  Dataset d = load_dataset(dir.string());
  FakeEncoder again;
  PrepareSummary s = prepare_features(d, again, (dir / "store").string(), o);
  CHECK(s.changed == 1);   // before: "6 already stored", the stale row kept
  CHECK(s.already == 5);
  CHECK(s.encoded == 1);
  FeatureStore store = FeatureStore::open(dir / "store", "fake-avgpool-2x2");
  at::Tensor now = again.forward(again.preprocess({read_image_rgb(dir / "images" / "img5.png")}));
  CHECK(at::allclose(store.gather({static_cast<std::int64_t>(*store.row_of("img5.png"))}), now));
  // The rows are current again: a third run encodes nothing.
  FakeEncoder third;
  PrepareSummary s3 = prepare_features(d, third, (dir / "store").string(), o);
  CHECK(s3.changed == 0);
  CHECK(s3.encoded == 0);
}
