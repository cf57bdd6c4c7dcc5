// Fine-tuning the encoder's last blocks with the decoder (--fine-tune-encoder) on a tiny scenes data
// set: only the top blocks change, gradients reach them, resume is exact, the bundle carries the
// tuned weights (format 2) and captioning uses them, frozen feature stores are refused with it.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/serialize/input-archive.h>

#include <cmath>
#include <fstream>
#include <map>

#include <unistd.h>

#include "satcap/data/dataset.h"
#include "satcap/data/image.h"
#include "satcap/decode/captioner.h"
#include "satcap/model/bundle.h"
#include "satcap/model/encoder.h"
#include "satcap/model/vocab.h"
#include "satcap/runtime/error.h"
#include "satcap/train/trainer.h"
#include "test_util.h"
#include "testing.h"

namespace fs = std::filesystem;
using namespace satcap;

namespace {

bool have_encoder() { return fs::exists(source_dir() / "models" / "embedded" / "mobilenet_v2" / "model.json"); }

// 12 scenes at 224x224 (10 train, 1 val, 1 test images, 5 captions each), made once per run.
const fs::path& scenes_dir() {
  static const fs::path dir = [] {
    fs::path d = fresh_temp_dir("finetune_scenes_" + std::to_string(::getpid())) / "scenes";
    auto r = run_satcap({"scenes", "--out", d.string(), "--images", "12", "--size", "224", "--seed", "3"});
    if (r.exit_code != 0) throw std::runtime_error("satcap scenes failed: " + r.err);
    return d;
  }();
  return dir;
}

// The training images as TrainingData for an encoder (what run_training builds), no validation.
struct ImageData {
  Dataset dataset;
  Vocabulary vocab;
  std::vector<fs::path> paths;
  TrainingData data;
};

std::unique_ptr<ImageData> image_data(Encoder* encoder) {
  auto d = std::make_unique<ImageData>();
  d->dataset = load_dataset(scenes_dir().string());
  VocabOptions vo;
  vo.min_count = 1;
  d->vocab = Vocabulary::build(d->dataset, vo, "train");
  for (const ImageEntry* img : d->dataset.split("train")) {
    const auto row = static_cast<int64_t>(d->paths.size());
    d->paths.push_back(img->path);
    for (const auto& c : img->captions) d->data.train.add(row, d->vocab.encode(c.tokens()));
  }
  d->data.encoder = encoder;
  const auto* paths = &d->paths;
  d->data.images = [paths, encoder](const std::vector<int64_t>& rows) {
    std::vector<cv::Mat> rgb;
    for (int64_t r : rows) rgb.push_back(read_image_rgb((*paths)[static_cast<std::size_t>(r)]));
    return encoder->preprocess(rgb);
  };
  return d;
}

TrainOptions tiny_options() {
  TrainOptions o;
  o.batch_size = 4;
  o.lr = 1e-3;
  o.encoder_lr = 1e-3;
  o.decoder.embed_dim = 8;
  o.decoder.attention_dim = 8;
  o.decoder.hidden_dim = 16;
  o.log_every = 1;
  o.checkpoint_every = 2;
  o.seed = 7;
  o.fine_tune_encoder = true;
  return o;
}

// The "train" records of a run's log.
std::vector<nlohmann::json> train_records(const fs::path& out) {
  std::vector<nlohmann::json> records;
  std::ifstream log(out / "train_log.jsonl");
  for (std::string line; std::getline(log, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.at("kind") == "train") records.push_back(j);
  }
  return records;
}

Decoder new_decoder(const ImageData& d, const TrainOptions& o, const Encoder& e) {
  at::manual_seed(o.seed);
  return Decoder(decoder_options_for(o, static_cast<int>(d.vocab.size()), e.dim(), e.regions()));
}

std::unique_ptr<Encoder> tunable(int blocks = 2) {
  EncoderOptions eo;
  eo.trainable_blocks = blocks;
  return load_encoder(eo);
}

std::map<std::string, at::Tensor> snapshot(Encoder& e) {
  std::map<std::string, at::Tensor> out;
  for (auto& [name, t] : e.named_trainable_parameters()) out[name] = t.detach().clone();
  return out;
}

// Runs with one LibTorch thread (bit-exact repeatability), restoring the count after.
struct OneThread {
  int before = at::get_num_threads();
  OneThread() { at::set_num_threads(1); }
  ~OneThread() { at::set_num_threads(before); }
};

cv::Mat first_image() { return read_image_rgb(load_dataset(scenes_dir().string()).split("test").front()->path); }

}  // namespace

TEST_CASE("fine-tuning trains the top blocks only: finite loss, gradients reach them, the trunk is unchanged",
          "[finetune]") {
  if (!have_encoder()) {
    WARN("models/embedded/mobilenet_v2 not imported (run tools/setup.sh): skipping");
    return;
  }
  OneThread one;
  auto encoder = tunable(2);
  auto frozen = load_encoder(EncoderOptions{});
  auto named = encoder->named_trainable_parameters();
  REQUIRE(!named.empty());
  for (auto& [name, t] : named) {  // block_12 and block_13's expansion (up to the feature layer)
    INFO(name);
    CHECK((name.rfind("block_12_", 0) == 0 || name.rfind("block_13_expand", 0) == 0));
  }
  const auto before = snapshot(*encoder);
  auto d = image_data(encoder.get());
  TrainOptions o = tiny_options();
  o.max_steps = 2;
  Decoder decoder = new_decoder(*d, o, *encoder);
  auto out = fresh_temp_dir("finetune_top_only");
  TrainSummary s = train_decoder(decoder, d->data, d->vocab, o, out, {}, c10::Device(c10::kCPU), true);
  CHECK(s.steps == 2);

  // The loss is finite at every logged step.
  const auto records = train_records(out);
  CHECK(records.size() == 2);
  for (const auto& j : records) {
    CHECK(std::isfinite(j.at("loss").get<double>()));
    CHECK(j.at("encoder_lr") == o.encoder_lr);
  }

  // The last step's gradients reached every tuned tensor, and the tensors moved.
  int nonzero = 0, changed = 0;
  for (auto& [name, t] : encoder->named_trainable_parameters()) {
    REQUIRE(t.grad().defined());
    if (t.grad().abs().sum().item<double>() > 0) ++nonzero;
    if (!at::equal(t, before.at(name))) ++changed;
  }
  CHECK(nonzero > static_cast<int>(named.size()) / 2);
  CHECK(changed > static_cast<int>(named.size()) / 2);

  // Tuned features differ from the frozen ones; with the original top weights put back they are
  // the frozen encoder's again, so nothing below the top blocks changed.
  at::NoGradGuard no_grad;
  const cv::Mat img = first_image();
  at::Tensor h_frozen = frozen->encode({img});
  at::Tensor h_tuned = encoder->encode({img});
  CHECK_FALSE(at::allclose(h_tuned, h_frozen, 1e-4, 1e-4));
  encoder->load_trainable(before, "test");
  CHECK(at::allclose(encoder->encode({img}), h_frozen, 1e-4, 1e-4));
}

TEST_CASE("fine-tuning with --precision bf16: the encoder runs under autocast, its float32 weights get gradients",
          "[finetune]") {
  if (!have_encoder()) {
    WARN("models/embedded/mobilenet_v2 not imported (run tools/setup.sh): skipping");
    return;
  }
  auto encoder = tunable(2);
  const auto before = snapshot(*encoder);
  auto d = image_data(encoder.get());
  TrainOptions o = tiny_options();
  o.max_steps = 2;
  o.precision = Precision::bf16;
  Decoder decoder = new_decoder(*d, o, *encoder);
  auto out = fresh_temp_dir("finetune_bf16");
  TrainSummary s = train_decoder(decoder, d->data, d->vocab, o, out, {}, c10::Device(c10::kCPU), true);
  CHECK(s.steps == 2);
  const auto records = train_records(out);
  CHECK(records.size() == 2);
  for (const auto& j : records) CHECK(std::isfinite(j.at("loss").get<double>()));
  int changed = 0;
  for (auto& [name, t] : encoder->named_trainable_parameters()) {
    CHECK(t.scalar_type() == at::kFloat);
    REQUIRE(t.grad().defined());
    CHECK(t.grad().scalar_type() == at::kFloat);
    if (!at::equal(t, before.at(name))) ++changed;
  }
  CHECK(changed > static_cast<int>(before.size()) / 2);
}

TEST_CASE("fine-tuning: k steps, then --resume for k more, gives the weights of 2k steps straight", "[finetune]") {
  if (!have_encoder()) {
    WARN("models/embedded/mobilenet_v2 not imported (run tools/setup.sh): skipping");
    return;
  }
  OneThread one;
  TrainOptions o = tiny_options();
  o.max_steps = 4;
  auto straight_encoder = tunable(1);  // block_13's expansion only: a faster test
  auto sd = image_data(straight_encoder.get());
  Decoder straight = new_decoder(*sd, o, *straight_encoder);
  train_decoder(straight, sd->data, sd->vocab, o, fresh_temp_dir("finetune_resume_straight"), {},
                c10::Device(c10::kCPU), true);

  auto split_dir = fresh_temp_dir("finetune_resume_split");
  {
    auto e = tunable(1);
    auto d = image_data(e.get());
    Decoder first = new_decoder(*d, o, *e);
    TrainOptions half = o;
    half.max_steps = 2;
    train_decoder(first, d->data, d->vocab, half, split_dir, {}, c10::Device(c10::kCPU), true);
  }
  auto resumed_encoder = tunable(1);
  auto rd = image_data(resumed_encoder.get());
  Decoder resumed = new_decoder(*rd, o, *resumed_encoder);
  TrainOptions rest = o;
  rest.resume = true;
  TrainSummary s = train_decoder(resumed, rd->data, rd->vocab, rest, split_dir, {}, c10::Device(c10::kCPU), true);
  CHECK(s.steps == 4);

  auto a = snapshot(*straight_encoder), b = snapshot(*resumed_encoder);
  REQUIRE(a.size() == b.size());
  for (auto& [name, t] : a) {
    INFO(name);
    CHECK(at::equal(t, b.at(name)));
  }
  auto pa = straight->named_parameters(), pb = resumed->named_parameters();
  for (auto& item : pa) {
    INFO(item.key());
    CHECK(at::equal(item.value(), pb[item.key()]));
  }

  // A fine-tuned checkpoint is not resumed without fine-tuning.
  auto plain = image_data(nullptr);
  plain->data.encoder = nullptr;
  plain->data.images = nullptr;
  plain->data.gather = [](const std::vector<int64_t>& rows) {
    return at::zeros({static_cast<int64_t>(rows.size()), 196, 576});
  };
  TrainOptions frozen = rest;
  frozen.fine_tune_encoder = false;
  Decoder other = new_decoder(*plain, frozen, *resumed_encoder);
  CHECK_THROWS_AS(train_decoder(other, plain->data, plain->vocab, frozen, split_dir, {}, c10::Device(c10::kCPU), true),
                  UsageError);
}

TEST_CASE("satcap train --fine-tune-encoder: a format-2 bundle whose tuned encoder captions and refuses frozen features",
          "[finetune]") {
  if (!have_encoder()) {
    WARN("models/embedded/mobilenet_v2 not imported (run tools/setup.sh): skipping");
    return;
  }
  auto dir = fresh_temp_dir("finetune_cli");
  const std::string scenes = scenes_dir().string();
  auto r = run_satcap({"train", "--data", scenes, "--out", (dir / "out").string(), "--fine-tune-encoder",
                       "--fine-tune-blocks", "1", "--encoder-lr", "0.001", "--max-steps", "2", "--batch", "4",
                       "--embed-dim", "8", "--attention-dim", "8", "--hidden-dim", "16", "--min-word-count", "1",
                       "--threads", "1", "--quiet"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const fs::path model = dir / "out" / "model";
  CHECK_FALSE(fs::exists(dir / "out" / "features"));  // trained from the images
  CHECK(fs::exists(model / "encoder_weights.pt"));
  CHECK(fs::exists(dir / "out" / "test_scores.json"));  // scored with the tuned encoder
  auto config = nlohmann::json::parse(read_text_file(model / "config.json"));
  CHECK(config.at("format_version") == 2);
  const auto& enc = config.at("encoder");
  CHECK(enc.at("trainable_blocks") == 1);
  CHECK(enc.at("identity").get<std::string>().find(":tuned=") != std::string::npos);
  CHECK(enc.at("fine_tuned").at("base_identity") == load_encoder(EncoderOptions{})->identity());
  auto effective = nlohmann::json::parse(read_text_file(dir / "out" / "config.effective.json"));
  CHECK(effective.at("fine_tune_blocks") == 1);
  CHECK(effective.at("encoder_lr") == 0.001);

  // The saved tensors are the checkpoint's (the final model), and the ones a loaded encoder holds.
  Bundle bundle = load_bundle(dir / "out");
  REQUIRE(!bundle.encoder_weights.empty());
  torch::serialize::InputArchive checkpoint;
  checkpoint.load_from((dir / "out" / "checkpoint.pt").string());
  auto tuned = load_bundle_encoder(bundle, "", c10::Device(c10::kCPU), /*trainable=*/true);
  auto named = tuned->named_trainable_parameters();
  CHECK(named.size() == bundle.encoder_weights.size());
  for (auto& [name, t] : named) {
    INFO(name);
    at::Tensor saved;
    REQUIRE(checkpoint.try_read("encoder." + name, saved));
    CHECK(at::equal(bundle.encoder_weights.at(name), saved));
    CHECK(at::equal(t, saved));
  }
  CHECK(tuned->identity() == bundle.encoder_identity());

  // Inference with the bundle's encoder: frozen (no autograd), and not the frozen encoder's features.
  auto inference = load_bundle_encoder(bundle, "", c10::Device(c10::kCPU));
  CHECK(inference->trainable_parameters().empty());
  CHECK(inference->identity() == bundle.encoder_identity());
  const cv::Mat img = first_image();
  at::Tensor h = inference->encode({img});
  CHECK_FALSE(h.requires_grad());
  CHECK_FALSE(at::allclose(h, load_encoder(EncoderOptions{})->encode({img}), 1e-4, 1e-4));
  {
    at::NoGradGuard no_grad;
    CHECK(at::allclose(h, tuned->encode({img}), 1e-4, 1e-4));  // folded again: the same features
  }

  auto image = load_dataset(scenes).split("test").front()->path.string();
  auto caption = run_satcap({"caption", "--model", model.string(), image, "--threads", "1"});
  INFO(caption.err);
  CHECK(caption.exit_code == 0);
  CHECK(!caption.out.empty());

  // A feature store of the frozen encoder is refused with the fine-tuned model, saying what to do.
  auto prepared = run_satcap({"prepare", "--data", scenes, "--out", (dir / "frozen").string(), "--split", "test",
                              "--threads", "1", "--quiet"});
  REQUIRE(prepared.exit_code == 0);
  auto eval = run_satcap({"eval", "--model", model.string(), "--data", scenes, "--split", "test", "--features",
                          (dir / "frozen").string(), "--out", (dir / "eval").string(), "--threads", "1"});
  CHECK(eval.exit_code == 4);
  CHECK_THAT(eval.err, Catch::Contains("fine-tuned") && Catch::Contains("without --features"));
  auto from_images = run_satcap({"eval", "--model", model.string(), "--data", scenes, "--split", "test", "--out",
                                 (dir / "eval").string(), "--threads", "1", "--quiet"});
  INFO(from_images.err);
  CHECK(from_images.exit_code == 0);

  // Options that cannot go together, or out of range, are usage errors.
  auto with_features = run_satcap({"train", "--data", scenes, "--out", (dir / "x").string(), "--fine-tune-encoder",
                                   "--features", (dir / "frozen").string()});
  CHECK(with_features.exit_code == 2);
  CHECK_THAT(with_features.err, Catch::Contains("--features"));
  auto zero = run_satcap({"train", "--data", scenes, "--out", (dir / "x").string(), "--fine-tune-encoder",
                          "--fine-tune-blocks", "0"});
  CHECK(zero.exit_code == 2);
  CHECK_THAT(zero.err, Catch::Contains("--fine-tune-blocks"));

  // An older reader's view: a format this satcap does not know is refused with what to do.
  auto copy = dir / "newer";
  fs::copy(model, copy, fs::copy_options::recursive);
  config["format_version"] = kBundleFormatVersion + 1;
  write_text_file(copy / "config.json", config.dump());
  CHECK_THROWS_WITH(load_bundle(copy), Catch::Contains("upgrade satcap"));
}

TEST_CASE("a frozen model bundle stays format 1 without encoder weights", "[finetune]") {
  DecoderOptions d;
  d.vocab_size = 6;
  d.feature_dim = 4;
  d.regions = 3;
  d.embed_dim = 4;
  d.attention_dim = 4;
  d.hidden_dim = 4;
  Bundle b;
  b.decoder_options = d;
  b.decoder = Decoder(d);
  b.vocab = Vocabulary::build(std::vector<std::vector<std::string>>{{"a", "b"}}, VocabOptions{1, 10, 0});
  b.decoder_options.vocab_size = static_cast<int>(b.vocab.size());
  b.decoder = Decoder(b.decoder_options);
  b.encoder = {{"identity", "test-encoder"}};
  auto dir = fresh_temp_dir("finetune_frozen_bundle") / "model";
  save_bundle(b, dir);
  CHECK_FALSE(fs::exists(dir / "encoder_weights.pt"));
  auto config = nlohmann::json::parse(read_text_file(dir / "config.json"));
  CHECK(config.at("format_version") == 1);
  CHECK_FALSE(config.at("encoder").contains("fine_tuned"));
  Bundle loaded = load_bundle(dir);
  CHECK(loaded.encoder_weights.empty());
  CHECK(loaded.encoder_tuned_tag().empty());

  // With encoder weights: format 2, tagged identity, the same tensors back.
  b.encoder_weights["layer/weight"] = at::arange(6, at::kFloat).view({2, 3});
  save_bundle(b, dir);
  config = nlohmann::json::parse(read_text_file(dir / "config.json"));
  CHECK(config.at("format_version") == 2);
  loaded = load_bundle(dir);
  CHECK(loaded.encoder_identity() == "test-encoder:tuned=" + loaded.encoder_tuned_tag());
  REQUIRE(loaded.encoder_weights.count("layer/weight"));
  CHECK(at::equal(loaded.encoder_weights.at("layer/weight"), b.encoder_weights.at("layer/weight")));
  save_bundle(loaded, dir);  // saved again: the tag is not stacked
  CHECK(load_bundle(dir).encoder_identity() == loaded.encoder_identity());
  fs::remove(dir / "encoder_weights.pt");
  CHECK_THROWS_AS(load_bundle(dir), ModelError);
}
