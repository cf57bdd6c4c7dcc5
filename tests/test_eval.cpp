// `satcap eval` end to end on a tiny synthetic scenes dataset (boxes known) with a RANDOM-WEIGHTS
// decoder built here through the bundle API on the real embedded encoder: the captions are
// gibberish, which is all the checks need: the files' schema, that every scored image is a test
// image, that pointing.jsonl agrees with the boxes and the grid geometry, that decoding from a
// prepared feature store gives the images' captions, exit codes for bad input. Plus `satcap
// compare` on a minute budget (two tiny training runs).
#include "testing.h"

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <unistd.h>

#include "satcap/data/dataset.h"
#include "satcap/data/prepare.h"
#include "satcap/data/scenes.h"
#include "satcap/eval/pointing.h"
#include "satcap/model/bundle.h"
#include "satcap/model/encoder.h"
#include "satcap/model/vocab.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace satcap;
using nlohmann::json;

namespace {

// 30 scenes: 24 train, 3 val, 3 test images (index % 10 == 9).
fs::path tiny_scenes() {
  static fs::path made;
  if (!made.empty()) return made;
  const fs::path dir = fresh_temp_dir("eval_scenes_" + std::to_string(::getpid()));
  SceneOptions so;
  so.out_dir = (dir / "scenes").string();
  so.images = 30;
  so.seed = 11;
  so.threads = 1;
  generate_scenes(so);
  made = dir / "scenes";
  return made;
}

// A decoder with random weights over the scenes' training vocabulary, for mobilenet_v2 features.
fs::path random_bundle() {
  static fs::path made;
  if (!made.empty()) return made;
  const fs::path dir = fresh_temp_dir("eval_model_" + std::to_string(::getpid())) / "model";
  EncoderOptions eo;  // mobilenet_v2, imported by tools/setup.sh into models/embedded
  std::unique_ptr<Encoder> encoder = load_encoder(eo);
  VocabOptions vo;
  vo.min_count = 1;
  Bundle b;
  b.vocab = Vocabulary::build(load_dataset(tiny_scenes().string()), vo, "train");
  b.encoder = encoder->describe();
  b.decoder_options.vocab_size = static_cast<int>(b.vocab.size());
  b.decoder_options.feature_dim = encoder->dim();
  b.decoder_options.regions = encoder->regions();
  b.decoder_options.embed_dim = 16;
  b.decoder_options.attention_dim = 16;
  b.decoder_options.hidden_dim = 24;
  at::manual_seed(5);
  b.decoder = Decoder(b.decoder_options);
  {
    // Untrained, the search would end every caption at once: make <end> unlikely (captions run to
    // --max-len) and the shape names likely (so that pointing has words to count).
    at::NoGradGuard no_grad;
    at::Tensor bias = b.decoder->out_vocab->bias;  // [V]
    bias[Vocabulary::end_id] = -30.0;
    for (const auto& shape : scene_categories(SceneObjects::shapes))
      if (b.vocab.contains(shape)) bias[b.vocab.id(shape)] += 2.0;
  }
  b.training = {{"note", "random weights, made by tests/test_eval.cpp"}};
  save_bundle(b, dir);
  made = dir;
  return made;
}

json read_json(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  return json::parse(in);
}

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::istringstream in(read_text_file(p));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

std::map<std::int64_t, std::string> captions_of(const json& results) {
  std::map<std::int64_t, std::string> out;
  for (const auto& r : results) out[r.at("image_id").get<std::int64_t>()] = r.at("caption").get<std::string>();
  return out;
}

}  // namespace

TEST_CASE("eval: results, metrics and per-word pointing on a scenes test split", "[eval]") {
  const fs::path data = tiny_scenes(), model = random_bundle();
  const fs::path out = fresh_temp_dir("eval_basic") / "out";
  const CommandResult r = run_satcap({"eval", "--model", model.string(), "--data", data.string(), "--split", "test",
                                      "--beam", "2", "--max-len", "8", "--out", out.string(), "--per-word", "--quiet"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);

  const Dataset ds = load_dataset(data.string());
  std::set<std::int64_t> test_ids;
  for (const ImageEntry* e : ds.split("test")) test_ids.insert(e->id);
  REQUIRE(test_ids.size() == 3);

  // results.json: COCO results, one caption per test image, at most 8 words.
  const json results = read_json(out / "results.json");
  REQUIRE(results.is_array());
  const auto captions = captions_of(results);
  CHECK(results.size() == 3);
  for (const auto& [id, caption] : captions) {
    CHECK(test_ids.count(id) == 1);
    std::istringstream words(caption);
    CHECK(std::distance(std::istream_iterator<std::string>(words), std::istream_iterator<std::string>()) <= 8);
  }

  // metrics.json: the keys of `satcap score`, pointing (boxes are beside the dataset), entropy.
  const json m = read_json(out / "metrics.json");
  for (const char* key : {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"}) {
    INFO(key);
    REQUIRE(m.contains(key));
    CHECK(m[key].get<double>() >= 0.0);
  }
  CHECK(m["BLEU-1"].get<double>() <= 1.0);
  CHECK(m.at("images") == 3);
  CHECK(m.at("beam") == 2);
  CHECK(m.at("format_version") == 1);
  REQUIRE(m.contains("pointing"));
  REQUIRE(m.contains("attention_entropy"));
  const double hmax = std::log(196.0);
  CHECK(m.at("attention_entropy_max").get<double>() == Approx(hmax));
  CHECK(m.at("attention_entropy").get<double>() >= 0.0);
  CHECK(m.at("attention_entropy").get<double>() <= hmax + 1e-6);

  // The printed table names the metrics.
  CHECK(r.out.find("BLEU-4") != std::string::npos);
  CHECK(r.out.find("CIDEr") != std::string::npos);
  CHECK(r.out.find("attention entropy") != std::string::npos);

  // pointing.jsonl against the instances: each line's class is the word's class, present/hit
  // follow from the boxes and the centre of the named cell (224 x 224 images, 14 x 14 grid).
  const Instances inst = load_instances(data / "instances.json");
  const ClassLexicon lex(inst.categories);
  const auto lines = read_jsonl(out / "pointing.jsonl");
  int counted = 0, hits = 0;
  for (const auto& line : lines) {
    INFO(line.dump());
    const std::int64_t id = line.at("image_id");
    REQUIRE(test_ids.count(id) == 1);
    const std::string word = line.at("word");
    CHECK(lex.class_of(word) == std::optional<std::string>(line.at("class").get<std::string>()));
    const std::string caption = captions.at(id);
    std::istringstream ws(caption);
    std::vector<std::string> cw{std::istream_iterator<std::string>(ws), std::istream_iterator<std::string>()};
    REQUIRE(line.at("position").get<std::size_t>() < cw.size());
    CHECK(cw[line.at("position").get<std::size_t>()] == word);
    const int row = line.at("row"), col = line.at("col");
    CHECK(line.at("cell") == row * 14 + col);
    const double x = (col + 0.5) * 224 / 14, y = (row + 0.5) * 224 / 14;
    bool present = false, inside = false;
    for (const auto& b : inst.images.at(id).boxes) {
      if (b.category != line.at("class")) continue;
      present = true;
      inside = inside || (x >= b.x && x <= b.x + b.width && y >= b.y && y <= b.y + b.height);
    }
    CHECK(line.at("present") == present);
    CHECK(line.at("hit") == (present && inside));
    if (present) {
      ++counted;
      hits += inside ? 1 : 0;
    }
  }
  CHECK(m.at("pointing_words") == counted);
  if (counted > 0)
    CHECK(m.at("pointing").get<double>() == Approx(static_cast<double>(hits) / counted));
  else
    CHECK(m.at("pointing").is_null());
}

TEST_CASE("eval: decoding from a prepared feature store gives the images' captions", "[eval]") {
  const fs::path data = tiny_scenes(), model = random_bundle();
  const fs::path dir = fresh_temp_dir("eval_features");
  {
    EncoderOptions eo;
    auto encoder = load_encoder(eo);
    PrepareOptions po;
    po.split = "test";
    const PrepareSummary ps = prepare_features(load_dataset(data.string()), *encoder, (dir / "features").string(), po);
    REQUIRE(ps.failed == 0);
  }
  const CommandResult a = run_satcap({"eval", "--model", model.string(), "--data", data.string(), "--out",
                                      (dir / "images").string(), "--beam", "3", "--quiet"});
  INFO(a.err);
  REQUIRE(a.exit_code == 0);
  const CommandResult b = run_satcap({"eval", "--model", model.string(), "--data", data.string(), "--features",
                                      (dir / "features").string(), "--out", (dir / "features_out").string(), "--beam",
                                      "3", "--quiet"});
  INFO(b.err);
  REQUIRE(b.exit_code == 0);
  CHECK(captions_of(read_json(dir / "images" / "results.json")) ==
        captions_of(read_json(dir / "features_out" / "results.json")));
  const json ma = read_json(dir / "images" / "metrics.json"), mb = read_json(dir / "features_out" / "metrics.json");
  CHECK(ma.at("CIDEr").get<double>() == Approx(mb.at("CIDEr").get<double>()));
  CHECK(ma.at("attention_entropy").get<double>() == Approx(mb.at("attention_entropy").get<double>()).epsilon(1e-3));

  // The val split is not in this store: every image fails, nothing can be scored (exit 3).
  const CommandResult c = run_satcap({"eval", "--model", model.string(), "--data", data.string(), "--split", "val",
                                      "--features", (dir / "features").string(), "--out", (dir / "val").string()});
  CHECK(c.exit_code == 3);
  CHECK(c.err.find("not prepared") != std::string::npos);
}

TEST_CASE("eval: bad options and inputs give their exit codes", "[eval]") {
  const fs::path data = tiny_scenes(), model = random_bundle();
  const fs::path dir = fresh_temp_dir("eval_errors");
  auto eval = [&](std::vector<std::string> more) {
    std::vector<std::string> args{"eval", "--model", model.string(), "--data", data.string(), "--out",
                                  (dir / "out").string(), "--quiet"};
    args.insert(args.end(), more.begin(), more.end());
    return run_satcap(args);
  };
  CommandResult r = eval({"--beam", "0"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--beam") != std::string::npos);
  r = eval({"--split", "nosuch"});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("nosuch") != std::string::npos);
  CHECK(r.err.find("test") != std::string::npos);  // lists the splits there are
  r = run_satcap({"eval", "--model", (dir / "missing-model").string(), "--data", data.string(), "--out",
                  (dir / "out").string()});
  CHECK(r.exit_code == 4);
  r = eval({"--instances", (dir / "missing.json").string()});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("missing.json") != std::string::npos);
  write_text_file(dir / "file", "x");
  r = run_satcap({"eval", "--model", model.string(), "--data", data.string(), "--out", (dir / "file" / "out").string()});
  CHECK(r.exit_code == 5);

  // A test image missing on disk: reported, the others scored, exit 6.
  const fs::path copy = dir / "scenes";
  fs::copy(data, copy, fs::copy_options::recursive);
  const Dataset ds = load_dataset(copy.string());
  const ImageEntry* first = ds.split("test").front();
  fs::remove(first->path);
  r = run_satcap({"eval", "--model", model.string(), "--data", copy.string(), "--out", (dir / "partial").string(),
                  "--quiet"});
  INFO(r.err);
  CHECK(r.exit_code == 6);
  CHECK(r.err.find(first->path.filename().string()) != std::string::npos);
  const json m = read_json(dir / "partial" / "metrics.json");
  CHECK(m.at("images") == 2);
  CHECK(m.at("images_failed") == 1);
}

TEST_CASE("compare: soft and hard trained on the same data, one table, one stacked figure", "[eval]") {
  const fs::path data = tiny_scenes();
  const fs::path out = fresh_temp_dir("eval_compare") / "out";
  const CommandResult r =
      run_satcap({"compare", "--data", data.string(), "--out", out.string(), "--quick", "--max-steps", "3",
                  "--epochs", "1", "--hidden-dim", "16", "--embed-dim", "16", "--attention-dim", "16",
                  "--val-max-images", "2", "--quiet"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  const json table = read_json(out / "compare.json");
  for (const char* attention : {"soft", "hard"}) {
    INFO(attention);
    REQUIRE(table.contains(attention));
    const json& row = table[attention];
    for (const char* key : {"BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr", "pointing", "attention_entropy", "training_seconds"})
      CHECK(row.contains(key));
    CHECK(row.at("steps") == 3);
    CHECK(row.at("options").at("decoder").at("attention") == attention);
    CHECK(fs::exists(out / attention / "eval" / "metrics.json"));
  }
  // The same budget and seed for both.
  json so = table["soft"]["options"], ho = table["hard"]["options"];
  so["decoder"].erase("attention");
  ho["decoder"].erase("attention");
  CHECK(so == ho);
  const std::string md = read_text_file(out / "compare.md");
  CHECK(md.find("| soft |") != std::string::npos);
  CHECK(md.find("| hard |") != std::string::npos);
  CHECK(r.out.find("| soft |") != std::string::npos);
  // The figure: two titled attention figures stacked, each at least one 224-pixel tile high.
  const cv::Mat png = cv::imread((out / "attention_soft_vs_hard.png").string());
  REQUIRE_FALSE(png.empty());
  CHECK(png.rows >= 2 * 224);
}

TEST_CASE("compare: --attention runs one model, more epochs later continue it, as if trained straight", "[eval]") {
  const fs::path data = tiny_scenes();
  const fs::path base = fresh_temp_dir("eval_compare_continue");
  auto compare = [&](const fs::path& out, const std::string& epochs) {
    return run_satcap({"compare", "--data", data.string(), "--out", out.string(), "--quick", "--attention", "soft",
                       "--max-steps", "0", "--epochs", epochs, "--hidden-dim", "16", "--embed-dim", "16",
                       "--attention-dim", "16", "--val-max-images", "2", "--threads", "1"});
  };
  const CommandResult first = compare(base / "continued", "1");
  INFO(first.out << first.err);
  REQUIRE(first.exit_code == 0);
  CHECK_FALSE(fs::exists(base / "continued" / "hard"));         // only the soft run
  CHECK_FALSE(fs::exists(base / "continued" / "compare.md"));   // no table for one run
  CHECK(json::parse(first.out).contains("soft"));               // its row is printed instead
  const json one = read_json(base / "continued" / "soft" / "compare_training.json");

  const CommandResult second = compare(base / "continued", "2");
  INFO(second.out << second.err);
  REQUIRE(second.exit_code == 0);
  CHECK(second.err.find("continuing the soft-attention run") != std::string::npos);
  const json two = read_json(base / "continued" / "soft" / "compare_training.json");
  CHECK(two.at("continued_from_epochs") == 1);
  CHECK(two.at("steps").get<int>() == 2 * one.at("steps").get<int>());
  CHECK(two.at("training_seconds").get<double>() >= one.at("training_seconds").get<double>());

  // Other options on the same folder: refused, and the trained run is left as it was.
  const std::string weights = read_text_file(base / "continued" / "soft" / "model" / "weights.pt");
  const CommandResult other =
      run_satcap({"compare", "--data", data.string(), "--out", (base / "continued").string(), "--quick",
                  "--attention", "soft", "--max-steps", "0", "--epochs", "2", "--hidden-dim", "24", "--embed-dim",
                  "16", "--attention-dim", "16", "--val-max-images", "2", "--threads", "1"});
  INFO(other.out << other.err);
  CHECK(other.exit_code == 2);
  CHECK_THAT(other.err, Catch::Contains("--retrain"));
  CHECK(read_text_file(base / "continued" / "soft" / "model" / "weights.pt") == weights);

  const CommandResult straight = compare(base / "straight", "2");
  INFO(straight.out << straight.err);
  REQUIRE(straight.exit_code == 0);
  CHECK(straight.err.find("continuing") == std::string::npos);
  // The best bundle of both: the same weights, byte for byte.
  CHECK(read_text_file(base / "straight" / "soft" / "model" / "weights.pt") ==
        read_text_file(base / "continued" / "soft" / "model" / "weights.pt"));
}
