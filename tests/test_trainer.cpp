// The training loop on a tiny synthetic feature source: learning, exact resume, stopping on a
// non-finite loss with the checkpoint intact, option precedence; and `satcap train` end to end.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <memory>

#include "satcap/model/bundle.h"
#include "satcap/model/vocab.h"
#include "satcap/runtime/error.h"
#include "satcap/train/trainer.h"
#include "test_util.h"
#include "testing.h"

namespace fs = std::filesystem;
using namespace satcap;

namespace {

// 6 images with distinct random features; image i is described by two captions naming its colour
// and shape, so the caption is predictable from the features.
struct Synthetic {
  Vocabulary vocab;
  at::Tensor features;  // [6, 4, 8]
  TrainingData data;
  std::shared_ptr<bool> poison = std::make_shared<bool>(false);
};

Synthetic make_synthetic() {
  const std::vector<std::string> colours{"red", "green", "blue"}, shapes{"circle", "square"};
  std::vector<std::vector<std::string>> captions;
  for (int i = 0; i < 6; ++i) {
    captions.push_back({"a", colours[i % 3], shapes[i % 2]});
    captions.push_back({"one", colours[i % 3], shapes[i % 2], "here"});
  }
  Synthetic s;
  s.vocab = Vocabulary::build(captions, VocabOptions{1, 10, 0});
  at::manual_seed(123);
  s.features = at::randn({6, 4, 8});
  for (int i = 0; i < 6; ++i) {
    s.data.train.add(i, s.vocab.encode(captions[2 * i]));
    s.data.train.add(i, s.vocab.encode(captions[2 * i + 1]));
    ValidationImage v;
    v.id = std::to_string(i);
    v.feature_row = i;
    v.references = {"a " + colours[i % 3] + " " + shapes[i % 2], "one " + colours[i % 3] + " " + shapes[i % 2] + " here"};
    s.data.val.push_back(v);
  }
  auto features = s.features;
  auto poison = s.poison;
  s.data.gather = [features, poison](const std::vector<int64_t>& rows) {
    auto out = features.index_select(0, at::tensor(rows, at::kLong)).clone();
    if (*poison) out.fill_(std::numeric_limits<float>::quiet_NaN());
    return out;
  };
  return s;
}

TrainOptions tiny_options() {
  TrainOptions o;
  o.epochs = 4;
  o.batch_size = 4;  // 12 captions: 3 steps per epoch
  o.lr = 1e-2;
  o.decoder.embed_dim = 8;
  o.decoder.attention_dim = 8;
  o.decoder.hidden_dim = 16;
  o.decoder.dropout = 0.5;
  o.log_every = 1;
  o.checkpoint_every = 2;
  o.seed = 5;
  return o;
}

Decoder new_decoder(const Synthetic& s, const TrainOptions& o) {
  at::manual_seed(o.seed);
  return Decoder(decoder_options_for(o, static_cast<int>(s.vocab.size()), 8, 4));
}

std::vector<nlohmann::json> log_records(const fs::path& dir, const std::string& kind) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir / "train_log.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.at("kind") == kind) out.push_back(j);
  }
  return out;
}

bool same_weights(Decoder& a, Decoder& b) {
  auto pa = a->named_parameters(), pb = b->named_parameters();
  if (pa.size() != pb.size()) return false;
  for (auto& item : pa)
    if (!at::equal(item.value(), pb[item.key()])) return false;
  auto ba = a->named_buffers(), bb = b->named_buffers();
  for (auto& item : ba)
    if (!at::equal(item.value(), bb[item.key()])) return false;
  return true;
}

}  // namespace

TEST_CASE("training captions are stored flat and read back as added", "[train]") {
  TrainingCaptions captions;
  REQUIRE(captions.empty());
  const std::vector<std::vector<int64_t>> added{{1, 5, 9, 2}, {1, 2}, {1, 7, 7, 7, 7, 7, 2}, {}};
  for (std::size_t i = 0; i < added.size(); ++i) captions.add(static_cast<int64_t>(10 * i + 3), added[i]);
  captions.shrink_to_fit();
  REQUIRE(captions.size() == added.size());
  for (std::size_t i = 0; i < added.size(); ++i) {
    const TrainingCaption c = captions[i];
    REQUIRE(c.feature_row == static_cast<int64_t>(10 * i + 3));
    REQUIRE(std::vector<int64_t>(c.tokens, c.tokens + c.length) == added[i]);
  }
  REQUIRE_THROWS_AS(captions.add(0, {1, int64_t{1} << 31, 2}), std::invalid_argument);
  REQUIRE_THROWS_AS(captions.add(0, {-1}), std::invalid_argument);
  REQUIRE(captions.size() == added.size());  // a refused caption adds nothing
}

TEST_CASE("a few training steps lower the loss and validation decodes real captions", "[train]") {
  auto dir = fresh_temp_dir("train_learns");
  Synthetic s = make_synthetic();
  TrainOptions o = tiny_options();
  o.epochs = 12;
  o.decoder.dropout = 0;
  Decoder d = new_decoder(s, o);
  int bests = 0;
  TrainHooks hooks;
  hooks.on_best = [&](Decoder&, const TrainSummary&) { ++bests; };
  TrainSummary summary = train_decoder(d, s.data, s.vocab, o, dir, hooks, c10::Device(c10::kCPU), true);
  auto train = log_records(dir, "train");
  REQUIRE(train.size() == 36);
  CHECK(train.back().at("loss").get<double>() < 0.5 * train.front().at("loss").get<double>());
  CHECK(summary.steps == 36);
  CHECK(summary.epochs_completed == 12);
  auto val = log_records(dir, "val");
  CHECK(val.size() == 12);
  CHECK(bests >= 1);
  CHECK(summary.best_bleu4 > 0);
  CHECK(summary.best_scores.count("CIDEr") == 1);
  CHECK(fs::exists(dir / "checkpoint.pt"));
  CHECK(fs::file_size(dir / "curves.png") > 1000);
}

TEST_CASE("precision bf16: autocast training learns on the CPU, its first loss near float32's", "[train]") {
  for (const std::string attention : {"soft", "hard"}) {
    DYNAMIC_SECTION(attention << " attention") {
      Synthetic s = make_synthetic();
      TrainOptions o = tiny_options();
      o.decoder.attention = *enum_from_name<AttentionKind>(attention);
      o.epochs = 12;
      o.decoder.dropout = 0;
      o.val_every = 12;
      auto fp32_dir = fresh_temp_dir("train_fp32_" + attention), bf16_dir = fresh_temp_dir("train_bf16_" + attention);
      Decoder reference = new_decoder(s, o);
      train_decoder(reference, s.data, s.vocab, o, fp32_dir, {}, c10::Device(c10::kCPU), true);
      o.precision = Precision::bf16;
      Decoder d = new_decoder(s, o);
      TrainSummary summary = train_decoder(d, s.data, s.vocab, o, bf16_dir, {}, c10::Device(c10::kCPU), true);
      auto fp32 = log_records(fp32_dir, "train"), bf16 = log_records(bf16_dir, "train");
      REQUIRE(bf16.size() == 36);
      CHECK(summary.steps == 36);
      // The same weights and batch: bfloat16's 8-bit mantissa moves the first loss by well under 5%.
      const double first = bf16.front().at("nll").get<double>(), first32 = fp32.front().at("nll").get<double>();
      CHECK(std::abs(first - first32) < 0.05 * first32);
      // It learns as float32 does (hard attention's sampled regions differ between the two runs).
      const double last = bf16.back().at("nll").get<double>(), last32 = fp32.back().at("nll").get<double>();
      INFO("first nll " << first << " (fp32 " << first32 << "), last " << last << " (fp32 " << last32 << ")");
      CHECK(last < 0.6 * first);
      CHECK(last < 1.5 * last32 + 0.1);
      CHECK_FALSE(bf16.back().contains("loss_scale"));  // bf16 needs no loss scaling
      for (auto& item : d->named_parameters()) CHECK(item.value().scalar_type() == at::kFloat);  // weights stay fp32
    }
  }
}

TEST_CASE("precision fp16 is refused on the CPU before training starts", "[train]") {
  auto dir = fresh_temp_dir("train_fp16_cpu");
  Synthetic s = make_synthetic();
  TrainOptions o = tiny_options();
  o.precision = Precision::fp16;
  Decoder d = new_decoder(s, o);
  CHECK_THROWS_WITH(train_decoder(d, s.data, s.vocab, o, dir, {}, c10::Device(c10::kCPU), true),
                    Catch::Contains("--precision fp16") && Catch::Contains("cuda"));
  CHECK_FALSE(fs::exists(dir / "checkpoint.pt"));
}

TEST_CASE("k steps, then --resume for k more, gives the weights of 2k steps straight", "[train]") {
  for (std::string attention : {"soft", "hard"}) {
    DYNAMIC_SECTION(attention << " attention") {
      Synthetic s = make_synthetic();
      TrainOptions o = tiny_options();
      o.decoder.attention = *enum_from_name<AttentionKind>(attention);
      o.max_steps = 10;  // ends mid-epoch (3 steps per epoch)

      auto straight_dir = fresh_temp_dir("train_resume_straight_" + attention);
      Decoder straight = new_decoder(s, o);
      train_decoder(straight, s.data, s.vocab, o, straight_dir, {}, c10::Device(c10::kCPU), true);

      auto split_dir = fresh_temp_dir("train_resume_split_" + attention);
      Decoder first = new_decoder(s, o);
      TrainOptions half = o;
      half.max_steps = 5;  // mid-epoch too
      train_decoder(first, s.data, s.vocab, half, split_dir, {}, c10::Device(c10::kCPU), true);
      CHECK_FALSE(same_weights(first, straight));

      // A fresh process would start from other weights and another random state: scramble both.
      at::manual_seed(999);
      Decoder resumed = new_decoder(s, o);
      at::randn({100});
      TrainOptions rest = o;
      rest.resume = true;
      TrainSummary summary = train_decoder(resumed, s.data, s.vocab, rest, split_dir, {}, c10::Device(c10::kCPU), true);
      CHECK(summary.steps == 10);
      CHECK(same_weights(resumed, straight));
      // The log continues where the checkpoint was: one train record per step.
      CHECK(log_records(split_dir, "train").size() == 10);
    }
  }
}

TEST_CASE("a non-finite loss stops training (exit 7) with the last checkpoint intact", "[train]") {
  auto dir = fresh_temp_dir("train_nan");
  Synthetic s = make_synthetic();
  TrainOptions o = tiny_options();
  o.max_steps = 3;
  Decoder d = new_decoder(s, o);
  train_decoder(d, s.data, s.vocab, o, dir, {}, c10::Device(c10::kCPU), true);
  std::string before = read_text_file(dir / "checkpoint.pt");
  REQUIRE(!before.empty());

  *s.poison = true;  // every feature becomes NaN
  TrainOptions more = o;
  more.max_steps = 6;
  more.resume = true;
  Decoder again = new_decoder(s, o);
  try {
    train_decoder(again, s.data, s.vocab, more, dir, {}, c10::Device(c10::kCPU), true);
    FAIL("training went on with a NaN loss");
  } catch (const TrainingStopped& e) {
    CHECK(e.code() == ExitCode::interrupted);
    CHECK_THAT(std::string(e.what()), Catch::Contains("NaN"));
    CHECK_THAT(std::string(e.what()), Catch::Contains("checkpoint"));
  }
  CHECK(read_text_file(dir / "checkpoint.pt") == before);
  CHECK(log_records(dir, "stopped").size() == 1);
  // The kept checkpoint still resumes (with sane features).
  *s.poison = false;
  Decoder third = new_decoder(s, o);
  CHECK(train_decoder(third, s.data, s.vocab, more, dir, {}, c10::Device(c10::kCPU), true).steps == 6);
}

TEST_CASE("training options: defaults < config file < command line", "[train]") {
  nlohmann::json config = {{"epochs", 3}, {"lr", 0.01}, {"decoder", {{"attention", "hard"}}}};
  // The options the user typed (lr); the parsed default-like epochs 77 was not typed and must not
  // override the file.
  const nlohmann::json typed = {{"lr", 0.5}};
  TrainOptions o = resolve_train_options(&config, typed, "cfg.json");
  CHECK(o.lr == 0.5);
  CHECK(o.epochs == 3);
  CHECK(o.decoder.attention == AttentionKind::hard);
  CHECK(o.batch_size == TrainOptions{}.batch_size);
  TrainOptions no_file = resolve_train_options(nullptr, {{"epochs", 77}}, "");
  CHECK(no_file.epochs == 77);
  CHECK(no_file.lr == TrainOptions{}.lr);

  // to_json / from_json round trip.
  TrainOptions round = train_options_from_json(to_json(o));
  CHECK(to_json(round) == to_json(o));

  nlohmann::json unknown = {{"epochz", 3}};
  CHECK_THROWS_WITH(resolve_train_options(&unknown, nlohmann::json::object(), "cfg.json"), Catch::Contains("epochz"));
  nlohmann::json wrong_type = {{"epochs", "many"}};
  CHECK_THROWS_AS(resolve_train_options(&wrong_type, nlohmann::json::object(), "cfg.json"), UsageError);
  // The decoder's data fields are set from the data, never by a config.
  nlohmann::json data_field = {{"decoder", {{"vocab_size", 10}}}};
  CHECK_THROWS_WITH(resolve_train_options(&data_field, nlohmann::json::object(), "cfg.json"),
                    Catch::Contains("vocab_size"));

  // Configs written before the decoder and the validation search were nested still load.
  nlohmann::json flat = {{"attention", "hard"}, {"hidden_dim", 96}, {"alpha_c", 0.5},
                         {"val_beam_size", 2}, {"max_caption_length", 17}};
  TrainOptions old = resolve_train_options(&flat, nlohmann::json::object(), "old.json");
  CHECK(old.decoder.attention == AttentionKind::hard);
  CHECK(old.decoder.hidden_dim == 96);
  CHECK(old.decoder.alpha_c == 0.5);
  CHECK(old.validation.beam_size == 2);
  CHECK(old.validation.max_length == 17);
}

TEST_CASE("the shipped training recipes are valid option files", "[train]") {
  for (const char* recipe : {"tools/scenes_training.json", "datasets/coco_paper_training.json"}) {
    INFO(recipe);
    std::ifstream in(source_dir() / recipe);
    REQUIRE(in);
    const nlohmann::json config = nlohmann::json::parse(in);
    TrainOptions o;
    REQUIRE_NOTHROW(o = resolve_train_options(&config, nlohmann::json::object(), recipe));
    CHECK_NOTHROW(validate(o));
    // Every key of the recipe holds its value in the options.
    nlohmann::json merged = to_json(o);
    merged.merge_patch(config);
    CHECK(merged == to_json(o));
  }
  // The paper's COCO setting keeps the doubly stochastic term that the defaults leave off.
  std::ifstream coco(source_dir() / "datasets/coco_paper_training.json");
  CHECK(nlohmann::json::parse(coco).at("decoder").at("alpha_c").get<double>() == 1.0);
  CHECK(TrainOptions{}.decoder.alpha_c == 0.0);
}

TEST_CASE("invalid training options are refused naming the option", "[train]") {
  TrainOptions o;
  o.batch_size = 0;
  CHECK_THROWS_WITH(validate(o), Catch::Contains("--batch"));
  o = {};
  o.decoder.hidden_dim = 0;
  CHECK_THROWS_WITH(validate(o), Catch::Contains("--hidden-dim"));
  o = {};
  o.validation.beam_size = 0;
  CHECK_THROWS_WITH(validate(o), Catch::Contains("--val-beam"));
  // Closed choices are enums: unknown names are refused where they are read, naming the key.
  CHECK_THROWS_WITH(train_options_from_json({{"decoder", {{"attention", "medium"}}}}), Catch::Contains("attention"));
  o = {};
  o.lr = -1;
  CHECK_THROWS_AS(validate(o), UsageError);
  CHECK_THROWS_WITH(train_options_from_json({{"precision", "half"}}), Catch::Contains("precision"));
  CHECK_NOTHROW(validate(TrainOptions{}));
}

TEST_CASE("satcap train: from a scenes data set to a model bundle, config file and resume", "[train]") {
  if (!fs::exists(source_dir() / "models" / "embedded" / "mobilenet_v2" / "model.json")) {
    WARN("models/embedded/mobilenet_v2 not imported (run tools/setup.sh): skipping satcap train end to end");
    return;
  }
  auto dir = fresh_temp_dir("train_cli");
  auto scenes = run_satcap({"scenes", "--out", (dir / "scenes").string(), "--images", "20", "--seed", "3"});
  REQUIRE(scenes.exit_code == 0);
  write_text_file(dir / "config.json", R"({"lr": 0.02, "batch_size": 16, "epochs": 5, "hidden_dim": 16})");
  const std::vector<std::string> common{"train", "--data", (dir / "scenes").string(), "--out", (dir / "out").string(),
                                        "--config", (dir / "config.json").string(), "--embed-dim", "8",
                                        "--attention-dim", "8", "--min-word-count", "1", "--log-every", "1"};
  auto args = common;
  args.insert(args.end(), {"--epochs", "2", "--max-steps", "3"});
  auto first = run_satcap(args);
  INFO(first.err);
  REQUIRE(first.exit_code == 0);
  CHECK(fs::exists(dir / "out" / "features" / "meta.json"));  // prepared with the default encoder
  auto effective = nlohmann::json::parse(read_text_file(dir / "out" / "config.effective.json"));
  CHECK(effective.at("lr") == 0.02);           // from the config file
  CHECK(effective.at("epochs") == 2);          // the command line wins over the file
  CHECK(effective.at("batch_size") == 16);     // from the config file
  CHECK(effective.at("decoder").at("hidden_dim") == 16);
  CHECK(effective.at("decoder").at("dropout") == TrainOptions{}.decoder.dropout);  // default
  // The effective options read back as a config file.
  TrainOptions again;
  REQUIRE_NOTHROW(again = train_options_from_json(effective, TrainOptions{}, "config.effective.json"));
  CHECK(to_json(again) == to_json(train_options_from_json(to_json(again))));
  CHECK(again.lr == 0.02);
  CHECK(again.decoder.hidden_dim == 16);
  Bundle bundle = load_bundle(dir / "out");
  CHECK(bundle.decoder_options.hidden_dim == 16);
  CHECK(bundle.decoder_options.feature_dim == 576);
  CHECK(bundle.encoder_identity().find("mobilenet_v2") != std::string::npos);

  // Resume to the end of the 2 epochs: validation runs and the best model is kept. The run keeps
  // its own options; the step limit, which may change on the way, is lifted and said so.
  args = common;
  args.insert(args.end(), {"--epochs", "2", "--max-steps", "0", "--resume", "--features",
                           (dir / "out" / "features").string()});
  auto second = run_satcap(args);
  INFO(second.err);
  REQUIRE(second.exit_code == 0);
  CHECK_THAT(second.err, Catch::Contains("--resume applies --max-steps 0 (the run has 3)"));
  CHECK(log_records(dir / "out", "val").size() == 2);
  CHECK(log_records(dir / "out", "resume").size() == 1);
  CHECK(fs::exists(dir / "out" / "curves.png"));
  CHECK(fs::exists(dir / "out" / "test_scores.json"));

  auto refused = run_satcap({"train", "--data", (dir / "scenes").string(), "--out", (dir / "other").string(),
                             "--fine-tune-encoder", "--features", (dir / "out" / "features").string()});
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.err, Catch::Contains("--features cannot be used with --fine-tune-encoder"));
  auto bad = run_satcap({"train", "--data", (dir / "scenes").string(), "--out", (dir / "other").string(), "--batch", "0"});
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains("--batch"));
  auto nothing = run_satcap({"train", "--data", (dir / "scenes").string(), "--out", (dir / "other").string(), "--resume",
                             "--features", (dir / "out" / "features").string()});
  CHECK(nothing.exit_code == 2);
  CHECK_THAT(nothing.err, Catch::Contains("checkpoint.pt"));
}
