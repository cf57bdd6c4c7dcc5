// Model bundles: round trip, refusals (newer format, missing pieces, another encoder, wrong shapes),
// formats 1 and 3, and where a bundle's TorchScript encoder file is found.
#include <ATen/ATen.h>
#include <torch/script.h>

#include <nlohmann/json.hpp>

#include "satcap/decode/captioner.h"
#include "satcap/model/bundle.h"
#include "satcap/model/encoder.h"
#include "satcap/runtime/error.h"
#include "test_util.h"
#include "testing.h"

namespace fs = std::filesystem;
using namespace satcap;

namespace {

Bundle tiny_bundle(uint64_t seed = 7) {
  Bundle b;
  b.vocab = Vocabulary::build({{"a", "red", "circle"}, {"a", "blue", "square"}}, VocabOptions{1, 10, 0});
  b.decoder_options.vocab_size = static_cast<int>(b.vocab.size());
  b.decoder_options.feature_dim = 6;
  b.decoder_options.regions = 4;
  b.decoder_options.embed_dim = 8;
  b.decoder_options.attention_dim = 8;
  b.decoder_options.hidden_dim = 12;
  at::manual_seed(seed);
  b.decoder = Decoder(b.decoder_options);
  b.decoder->eval();
  b.encoder = {{"identity", "test-encoder-v1"}, {"grid", {2, 2}}, {"dim", 6}};
  b.training = {{"note", "test"}};
  return b;
}

at::Tensor logits_of(Decoder& d) {
  at::manual_seed(1);
  auto features = at::randn({2, 4, 6});
  auto captions = at::tensor({1, 4, 5, 2, 1, 6, 2, 0}, at::kLong).view({2, 4});
  auto lengths = at::tensor({4, 3}, at::kLong);
  at::NoGradGuard no_grad;
  d->eval();
  return d->forward(features, captions, lengths).padded_logits();
}

void edit_config(const fs::path& dir, const std::function<void(nlohmann::json&)>& edit) {
  auto j = nlohmann::json::parse(read_text_file(dir / "config.json"));
  edit(j);
  write_text_file(dir / "config.json", j.dump(2));
}

template <typename F>
std::string model_error_of(F&& f) {
  try {
    f();
  } catch (const ModelError& e) {
    return e.what();
  }
  return "(no ModelError)";
}

}  // namespace

TEST_CASE("a bundle loads back with the same outputs", "[bundle]") {
  auto dir = fresh_temp_dir("bundle_roundtrip") / "model";
  Bundle b = tiny_bundle();
  save_bundle(b, dir);
  CHECK(fs::exists(dir / "config.json"));
  CHECK(fs::exists(dir / "vocab.json"));
  CHECK(fs::exists(dir / "weights.pt"));
  auto config = nlohmann::json::parse(read_text_file(dir / "config.json"));
  CHECK(config.at("format_version") == 1);  // no fine-tuned encoder weights: still format 1
  CHECK(config.at("encoder").at("identity") == "test-encoder-v1");

  Bundle loaded = load_bundle(dir, "test-encoder-v1");
  CHECK(loaded.vocab.size() == b.vocab.size());
  CHECK(loaded.vocab.id("circle") == b.vocab.id("circle"));
  CHECK(loaded.decoder_options.hidden_dim == 12);
  CHECK(loaded.encoder_identity() == "test-encoder-v1");
  CHECK(loaded.training.at("note") == "test");
  CHECK(at::equal(logits_of(b.decoder), logits_of(loaded.decoder)));
  // Another decoder's weights differ, so the equality above is not vacuous.
  Bundle other = tiny_bundle(8);
  CHECK_FALSE(at::equal(logits_of(b.decoder), logits_of(other.decoder)));

  // A training output folder holding model/ is accepted too.
  CHECK(load_bundle(dir.parent_path()).vocab.size() == b.vocab.size());
}

TEST_CASE("saving over a bundle replaces it whole and leaves no temporary folders", "[bundle]") {
  auto root = fresh_temp_dir("bundle_replace");
  save_bundle(tiny_bundle(1), root / "model");
  Bundle second = tiny_bundle(2);
  save_bundle(second, root / "model");
  Bundle loaded = load_bundle(root / "model");
  CHECK(at::equal(logits_of(second.decoder), logits_of(loaded.decoder)));
  int entries = 0;
  for (auto& e : fs::directory_iterator(root)) {
    (void)e;
    ++entries;
  }
  CHECK(entries == 1);
}

TEST_CASE("a bundle from a newer satcap is refused with what to do", "[bundle]") {
  auto dir = fresh_temp_dir("bundle_newer") / "model";
  save_bundle(tiny_bundle(), dir);
  edit_config(dir, [](nlohmann::json& j) { j["format_version"] = kBundleFormatVersion + 1; });
  auto msg = model_error_of([&] { load_bundle(dir); });
  CHECK_THAT(msg, Catch::Contains("newer satcap"));
  CHECK_THAT(msg, Catch::Contains("upgrade satcap"));
}

TEST_CASE("an incomplete or malformed bundle is refused naming the file", "[bundle]") {
  auto dir = fresh_temp_dir("bundle_missing") / "model";
  save_bundle(tiny_bundle(), dir);
  SECTION("missing vocab") {
    fs::remove(dir / "vocab.json");
    CHECK_THAT(model_error_of([&] { load_bundle(dir); }), Catch::Contains("vocab.json"));
  }
  SECTION("missing weights") {
    fs::remove(dir / "weights.pt");
    CHECK_THAT(model_error_of([&] { load_bundle(dir); }), Catch::Contains("weights.pt"));
  }
  SECTION("missing config") {
    fs::remove(dir / "config.json");
    CHECK_THAT(model_error_of([&] { load_bundle(dir); }), Catch::Contains("config.json"));
  }
  SECTION("malformed config") {
    write_text_file(dir / "config.json", "{\"format_version\": 1, ");
    CHECK_THAT(model_error_of([&] { load_bundle(dir); }), Catch::Contains("malformed"));
  }
  SECTION("truncated weights") {
    auto bytes = read_text_file(dir / "weights.pt");
    write_text_file(dir / "weights.pt", bytes.substr(0, bytes.size() / 2));
    CHECK_THAT(model_error_of([&] { load_bundle(dir); }), Catch::Contains("weights.pt"));
  }
  SECTION("weights of another shape") {
    edit_config(dir, [](nlohmann::json& j) { j["decoder"]["hidden_dim"] = 10; });
    CHECK_THAT(model_error_of([&] { load_bundle(dir); }), Catch::Contains("wrong shape"));
  }
  SECTION("not a folder") {
    CHECK_THAT(model_error_of([&] { load_bundle(dir / "nowhere"); }), Catch::Contains("nowhere"));
  }
}

TEST_CASE("a bundle trained on another encoder's features is refused", "[bundle]") {
  auto dir = fresh_temp_dir("bundle_encoder") / "model";
  save_bundle(tiny_bundle(), dir);
  auto msg = model_error_of([&] { load_bundle(dir, "another-encoder"); });
  CHECK_THAT(msg, Catch::Contains("test-encoder-v1"));
  CHECK_THAT(msg, Catch::Contains("another-encoder"));
  Bundle b = load_bundle(dir);
  CHECK_THROWS_AS(b.require_encoder("another-encoder", "feature store x"), ModelError);
  CHECK_NOTHROW(b.require_encoder("test-encoder-v1", "feature store x"));
}

TEST_CASE("bundles are written in the oldest format that holds them, and format 1 reads as before", "[bundle]") {
  const auto root = fresh_temp_dir("bundle_formats");
  // models/default was written by satcap 0.1.0 in format 1, with that format's names.
  const fs::path shipped = source_dir() / "models" / "default";
  auto old_config = nlohmann::json::parse(read_text_file(shipped / "config.json"));
  REQUIRE(old_config.at("format_version") == 1);
  REQUIRE(old_config.at("decoder").at("init_mlp") == true);
  REQUIRE_FALSE(old_config.at("decoder").contains("init_state"));
  Bundle old = load_bundle(shipped);
  CHECK(old.decoder_options.init_state == InitState::tanh);
  CHECK(old.decoder_options.alpha_c == old_config.at("decoder").at("doubly_stochastic_lambda").get<double>());
  {
    at::NoGradGuard no_grad;
    const auto features = at::randn({2, old.decoder_options.regions, old.decoder_options.feature_dim});
    const auto st = old.decoder->init_state(features);
    CHECK(at::allclose(st.h, at::tanh(old.decoder->init_h->forward(features.mean(1))), 1e-5, 1e-6));
  }
  // Saved again, it stays format 1 with the old names, so older satcaps still read it.
  save_bundle(old, root / "again");
  auto again = nlohmann::json::parse(read_text_file(root / "again" / "config.json"));
  CHECK(again.at("format_version") == 1);
  CHECK(again.at("decoder").at("init_mlp") == true);
  CHECK(again.at("decoder").contains("doubly_stochastic_lambda"));
  CHECK_FALSE(again.at("decoder").contains("alpha_c"));
  // init_mlp false was a zero initial state.
  edit_config(root / "again", [](nlohmann::json& j) { j["decoder"]["init_mlp"] = false; });
  CHECK(load_bundle(root / "again").decoder_options.init_state == InitState::zeros);

  // A linear initial state (the PyTorch tutorial's) needs format 3, whose names are the current ones:
  // a format-1 reader would put tanh on it.
  Bundle linear = tiny_bundle();
  linear.decoder_options.init_state = InitState::linear;
  linear.decoder_options.alpha_c = 1.0;
  at::manual_seed(7);
  linear.decoder = Decoder(linear.decoder_options);
  save_bundle(linear, root / "linear");
  auto config = nlohmann::json::parse(read_text_file(root / "linear" / "config.json"));
  CHECK(config.at("format_version") == 3);
  CHECK(config.at("decoder").at("init_state") == "linear");
  CHECK(config.at("decoder").at("alpha_c") == 1.0);
  CHECK_FALSE(config.at("decoder").contains("init_mlp"));
  Bundle back = load_bundle(root / "linear");
  CHECK(back.decoder_options.init_state == InitState::linear);
  CHECK(at::equal(logits_of(linear.decoder), logits_of(back.decoder)));
}

namespace {

// A TorchScript "encoder" made here (no Python): a 1x1 convolution of the image to `dim` channels,
// with the description tools/export_encoder.py writes beside it.
void write_torchscript_encoder(const fs::path& pt, float weight, int dim = 6) {
  torch::jit::Module m("EncoderUnderTest");
  m.register_parameter("w", at::full({dim, 3, 1, 1}, weight), false);
  m.define("def forward(self, x):\n  return torch.conv2d(x, self.w)\n");
  m.save(pt.string());
  nlohmann::json meta = {{"format", "satcap-torchscript-encoder"}, {"format_version", 1}, {"arch", "conv1x1"},
                         {"weights", "test"}, {"input_size", {8, 8}}, {"mean", {0.5, 0.5, 0.5}},
                         {"std", {0.25, 0.25, 0.25}}, {"channel_order", "RGB"}, {"grid", {2, 2}}, {"dim", dim},
                         {"blocks", {"all"}}};
  write_text_file(fs::path(pt).replace_extension(".json"), meta.dump());
}

struct CurrentDirectory {
  fs::path saved = fs::current_path();
  explicit CurrentDirectory(const fs::path& dir) { fs::current_path(dir); }
  ~CurrentDirectory() { fs::current_path(saved); }
};

}  // namespace

TEST_CASE("a bundle's relative encoder file is the bundle's own, not one of that name in the current folder",
          "[bundle]") {
  const auto root = fresh_temp_dir("bundle_encoder_file");
  fs::create_directories(root / "elsewhere" / "enc");
  fs::create_directories(root / "made");
  write_torchscript_encoder(root / "made" / "encoder.pt", 0.5f);
  write_torchscript_encoder(root / "elsewhere" / "encoder.pt", 0.25f);  // same name, other weights
  write_torchscript_encoder(root / "elsewhere" / "enc" / "trained.pt", 0.75f);

  auto bundle_with = [&](const fs::path& encoder_pt, const std::string& file, const fs::path& dir) {
    EncoderOptions eo;
    eo.source = encoder_pt.string();
    eo.grid = 2;
    Bundle b = tiny_bundle();
    b.encoder = load_encoder(eo)->describe();
    b.encoder["file"] = file;  // as an imported bundle (or one trained with a relative --encoder) says it
    save_bundle(b, dir);
    return b.encoder.at("identity").get<std::string>();
  };
  // The bundle holds its encoder as encoder.pt; the current folder holds another encoder.pt.
  const std::string own = bundle_with(root / "made" / "encoder.pt", "encoder.pt", root / "model");
  fs::copy_file(root / "made" / "encoder.pt", root / "model" / "encoder.pt");
  fs::copy_file(root / "made" / "encoder.json", root / "model" / "encoder.json");
  // A bundle trained with --encoder enc/trained.pt from `elsewhere`, holding no copy.
  const std::string trained = bundle_with(root / "elsewhere" / "enc" / "trained.pt", "enc/trained.pt", root / "trained");

  CurrentDirectory cwd(root / "elsewhere");
  auto encoder = load_bundle_encoder(load_bundle(root / "model"), "", c10::Device(c10::kCPU));
  CHECK(encoder->identity() == own);
  CHECK(encoder->describe().at("file") == (root / "model" / "encoder.pt").string());
  // Found from the folder it was trained in, when the bundle has no file of that name.
  CHECK(load_bundle_encoder(load_bundle(root / "trained"), "", c10::Device(c10::kCPU))->identity() == trained);
}
