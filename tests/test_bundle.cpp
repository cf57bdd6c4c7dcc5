// Model bundles: round trip, refusals (newer format, missing pieces, another encoder, wrong shapes).
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "satcap/model/bundle.h"
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
