// `satcap caption` end to end: the three output formats against their schema, overlays, video and
// the HTML gallery (opened in headless Chromium), bad images among good ones, bad model and output
// folders. Most tests use a RANDOM-WEIGHTS bundle built here through the bundle API (real encoder,
// tiny untrained decoder): its captions are gibberish, which is all format and shape checks need.
// One test runs the embedded default model (models/default) when it is installed.
#include "testing.h"

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "caption/caption_command.h"
#include "satcap/data/image.h"
#include "satcap/decode/captioner.h"
#include "satcap/model/bundle.h"
#include "satcap/model/encoder.h"
#include "satcap/model/vocab.h"
#include "satcap/viz/gallery.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace satcap;
using nlohmann::json;

namespace {

const fs::path kDarknet = "/usr/share/darknet/data";

// A decoder with random weights over a small vocabulary, saved as a bundle for the real embedded
// encoder (mobilenet_v2). Built once per test process (ctest runs each test case in its own).
fs::path random_bundle(const std::string& attention = "soft") {
  static std::map<std::string, fs::path> made;
  auto it = made.find(attention);
  if (it != made.end()) return it->second;
  const fs::path dir = fresh_temp_dir("caption_random_" + attention + "_" + std::to_string(::getpid())) / "model";
  EncoderOptions eo;  // mobilenet_v2, imported by tools/setup.sh into models/embedded
  std::unique_ptr<Encoder> encoder = load_encoder(eo);
  std::vector<std::vector<std::string>> captions{
      {"a", "dog", "sits", "next", "to", "a", "bicycle"}, {"a", "horse", "in", "a", "field"},
      {"a", "red", "kite", "in", "the", "sky"},           {"a", "giraffe", "near", "a", "tree"}};
  VocabOptions vo;
  vo.min_count = 1;
  Bundle b;
  b.vocab = Vocabulary::build(captions, vo);
  b.encoder = encoder->describe();
  b.decoder_options.vocab_size = static_cast<int>(b.vocab.size());
  b.decoder_options.feature_dim = encoder->dim();
  b.decoder_options.regions = encoder->regions();
  b.decoder_options.embed_dim = 16;
  b.decoder_options.attention_dim = 16;
  b.decoder_options.hidden_dim = 24;
  b.decoder_options.attention = *enum_from_name<AttentionKind>(attention);
  at::manual_seed(7);
  b.decoder = Decoder(b.decoder_options);
  b.training = {{"note", "random weights, made by tests/test_caption.cpp"}};
  save_bundle(b, dir);
  made[attention] = dir;
  return dir;
}

std::vector<std::string> darknet_images(std::size_t count) {
  std::vector<std::string> out;
  for (const char* name : {"dog.jpg", "horses.jpg", "kite.jpg", "giraffe.jpg", "eagle.jpg"}) {
    if (out.size() == count) break;
    out.push_back((kDarknet / name).string());
  }
  REQUIRE(out.size() == count);
  for (const auto& p : out) REQUIRE(fs::exists(p));  // Debian package darknet, installed by tools/setup.sh
  return out;
}

std::vector<std::string> args_with(std::vector<std::string> base, const std::vector<std::string>& more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

std::vector<std::string> words_of(const std::string& caption) {
  std::vector<std::string> out;
  std::istringstream in(caption);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

std::string chromium_path() {
  if (const char* env = std::getenv("SATCAP_CHROMIUM")) return env;
  return "/usr/bin/chromium";
}

// Headless Chromium's DOM of a local page after its scripts ran (fresh profile, nothing fetched).
std::string chromium_dom(const fs::path& html, const fs::path& work) {
  const fs::path profile = work / "chromium-profile";
  fs::remove_all(profile);
  fs::create_directories(profile);
  const fs::path out = work / "chromium.out", err = work / "chromium.err";
  std::string cmd = "timeout 180 '" + chromium_path() +
                    "' --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                    "--disable-background-networking --disable-component-update --disable-sync "
                    "--user-data-dir='" + profile.string() + "' --virtual-time-budget=5000 --dump-dom 'file://" +
                    fs::absolute(html).string() + "' >'" + out.string() + "' 2>'" + err.string() + "'";
  INFO("chromium stderr: " << read_text_file(err).substr(0, 2000));
  REQUIRE(std::system(cmd.c_str()) == 0);
  return read_text_file(out);
}

// Checks one json result against the schema; returns the number of words.
std::size_t check_json_entry(const json& e, int alternatives) {
  REQUIRE(e.is_object());
  REQUIRE(e.at("image").is_string());
  REQUIRE(e.at("caption").is_string());
  REQUIRE(e.at("score").is_number());
  REQUIRE(std::isfinite(e.at("score").get<double>()));
  const auto words = e.at("words").get<std::vector<std::string>>();
  REQUIRE(words == words_of(e.at("caption").get<std::string>()));
  const auto grid = e.at("grid").get<std::vector<int>>();
  REQUIRE(grid.size() == 2);
  REQUIRE(grid[0] == 14);  // mobilenet_v2 at 224: the paper's 14x14 grid
  REQUIRE(grid[1] == 14);
  const auto& att = e.at("attention");
  REQUIRE(att.size() == words.size());
  for (const auto& row : att) {
    REQUIRE(row.size() == static_cast<std::size_t>(grid[0] * grid[1]));
    double sum = 0;
    for (const auto& v : row) {
      const double x = v.get<double>();
      REQUIRE(x >= 0);
      REQUIRE(x <= 1);
      sum += x;
    }
    REQUIRE(sum == Approx(1.0).margin(1e-4));
  }
  if (alternatives > 1) {
    const auto& alts = e.at("alternatives");
    REQUIRE(alts.size() == static_cast<std::size_t>(alternatives));
    REQUIRE(alts[0].at("caption") == e.at("caption"));
    for (std::size_t k = 1; k < alts.size(); ++k) {
      REQUIRE(alts[k].at("caption").is_string());
      REQUIRE(alts[k].at("score").get<double>() <= alts[k - 1].at("score").get<double>() + 1e-9);
    }
  } else {
    REQUIRE_FALSE(e.contains("alternatives"));
  }
  return words.size();
}

}  // namespace

TEST_CASE("coco_image_id takes the last number of the file name", "[caption]") {
  CHECK(coco_image_id("COCO_val2014_000000123456.jpg") == std::optional<std::int64_t>(123456));
  CHECK(coco_image_id("x/y/000123.png") == std::optional<std::int64_t>(123));
  CHECK(coco_image_id("0000.png") == std::optional<std::int64_t>(0));
  CHECK(coco_image_id("img_2_v3.jpg") == std::optional<std::int64_t>(3));
  CHECK(coco_image_id("2019/dog.jpg") == std::nullopt);  // the folder's number does not count
  CHECK(coco_image_id("dog.jpg") == std::nullopt);
  CHECK(coco_image_id("n_12345678901234567890.jpg") == std::nullopt);  // too large for an id
}

TEST_CASE("caption options are validated with the option's name", "[caption]") {
  CaptionerOptions o;
  o.search.beam_size = 0;
  CHECK_THROWS_WITH(validate(o), Catch::Contains("--beam"));
  o = {};
  o.search.alternatives = 4;
  o.search.beam_size = 3;
  CHECK_THROWS_WITH(validate(o), Catch::Contains("--alternatives"));
  o = {};
  o.batch_size = 0;
  CHECK_THROWS_WITH(validate(o), Catch::Contains("--batch"));
  // Closed choices are enums: an unknown name is refused where it is typed.
  for (const char* option : {"--hard-decode", "--precision"}) {
    const auto r = run_satcap({"caption", "/usr/share/darknet/data/dog.jpg", option, "maybe"});
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains(option));
  }
  CaptionRunOptions r;
  r.inputs = {"x.jpg"};
  r.overlay.write_video = true;
  CHECK_THROWS_WITH(validate(r), Catch::Contains("--overlay-dir"));
  // Options are checked before the model is loaded.
  const auto bad = run_satcap({"caption", "/usr/share/darknet/data/dog.jpg", "--model", "/nonexistent/model",
                               "--beam", "2", "--alternatives", "3"});
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains("--alternatives"));
}

TEST_CASE("random-weights hard-attention bundle: every decode mode runs, sampling is reproducible with a seed",
          "[caption]") {
  std::vector<cv::Mat> images;
  for (const auto& p : darknet_images(2)) images.push_back(read_image_rgb(p));
  CaptionerOptions o;
  o.model = random_bundle("hard").string();
  o.search.max_length = 4;
  o.search.beam_size = 2;
  o.search.alternatives = 2;
  o.samples_per_word = 2;
  for (const char* mode : {"expected", "argmax", "sample"}) {
    CAPTURE(mode);
    o.search.hard_decode = *enum_from_name<HardDecode>(mode);
    o.seed = 11;
    Captioner a(o);
    REQUIRE(a.hard_attention());
    const auto first = a.caption_images(images);
    Captioner b(o);
    const auto second = b.caption_images(images);
    REQUIRE(first.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
      REQUIRE(first[i].ok());
      REQUIRE_FALSE(first[i].words.empty());
      REQUIRE(first[i].words.size() == first[i].alpha.size());
      REQUIRE(first[i].tokens == second[i].tokens);
      REQUIRE(first[i].sampled == second[i].sampled);
      REQUIRE(first[i].sampled.size() == first[i].words.size());
      REQUIRE(first[i].alternatives.size() == 1);
      REQUIRE(first[i].score >= first[i].alternatives[0].score);
    }
  }
}

TEST_CASE("random-weights bundle: json output matches the schema, in input order", "[caption]") {
  const auto images = darknet_images(3);
  const auto model = random_bundle();
  const auto r = run_satcap(args_with({"caption"}, {images[0], images[1], images[2], "--model", model.string(), "--beam",
                                                    "3", "--alternatives", "2", "--max-len", "6", "--format", "json",
                                                    "--batch", "2", "-q"}));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const json doc = json::parse(r.out);
  REQUIRE(doc.is_array());
  REQUIRE(doc.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    REQUIRE(doc[i].at("image") == images[i]);
    const std::size_t n = check_json_entry(doc[i], 2);
    REQUIRE(n >= 1);
    REQUIRE(n <= 6);
  }
}

TEST_CASE("random-weights bundle: text and coco formats, batch size does not change the captions", "[caption]") {
  const fs::path dir = fresh_temp_dir("caption_formats");
  // Small generated pictures named like COCO and scenes files, and one without a number.
  const std::vector<std::string> names{"COCO_val2014_000000123456.png", "000123.png", "picture.png"};
  std::vector<std::string> paths;
  for (std::size_t i = 0; i < names.size(); ++i) {
    cv::Mat img(60 + 10 * static_cast<int>(i), 80, CV_8UC3, cv::Scalar(30 * i, 200 - 50 * i, 90));
    cv::circle(img, {20 + 15 * static_cast<int>(i), 30}, 12, cv::Scalar(250, 250, 250), cv::FILLED);
    REQUIRE(cv::imwrite((dir / names[i]).string(), img));
    paths.push_back((dir / names[i]).string());
  }
  const auto model = random_bundle().string();
  const std::vector<std::string> base{"caption", dir.string(), "--model", model, "--max-len", "5", "-q"};

  // text: one line per image (the folder is listed sorted), PATH<TAB>caption.
  const auto text = run_satcap(args_with(base, {"--batch", "1"}));
  INFO(text.err);
  REQUIRE(text.exit_code == 0);
  auto lines = split(text.out, '\n');
  REQUIRE(lines.size() == 3);
  std::vector<std::string> sorted = paths;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> captions;
  for (std::size_t i = 0; i < 3; ++i) {
    auto fields = split(lines[i], '\t');
    REQUIRE(fields.size() == 2);
    REQUIRE(fields[0] == sorted[i]);
    REQUIRE_FALSE(words_of(fields[1]).empty());
    captions.push_back(fields[1]);
  }
  // The same captions with another batch size (batching across images must not change results).
  const auto text3 = run_satcap(args_with(base, {"--batch", "3"}));
  REQUIRE(text3.exit_code == 0);
  REQUIRE(text3.out == text.out);

  // text with alternatives: indented RANK<TAB>SCORE<TAB>caption lines, rank 1 = the caption.
  const auto alts = run_satcap(args_with(base, {"--beam", "3", "--alternatives", "3"}));
  REQUIRE(alts.exit_code == 0);
  lines = split(alts.out, '\n');
  REQUIRE(lines.size() == 3 * 4);
  for (std::size_t i = 0; i < 3; ++i) {
    const auto head = split(lines[4 * i], '\t');
    REQUIRE(head.size() == 2);
    for (int k = 1; k <= 3; ++k) {
      const std::string& l = lines[4 * i + k];
      REQUIRE(l.rfind("  ", 0) == 0);
      const auto f = split(l.substr(2), '\t');
      REQUIRE(f.size() == 3);
      REQUIRE(f[0] == std::to_string(k));
      REQUIRE(std::isfinite(std::stod(f[1])));
      if (k == 1) REQUIRE(f[2] == head[1]);
    }
  }

  // coco, into a file: image_id from the file name, else the input position.
  const fs::path out = dir / "sub" / "results.json";
  const auto coco = run_satcap(args_with(base, {"--format", "coco", "--out", out.string()}));
  REQUIRE(coco.exit_code == 0);
  REQUIRE(coco.out.empty());
  const json doc = json::parse(read_text_file(out));
  REQUIRE(doc.size() == 3);
  std::map<std::int64_t, std::string> by_id;
  for (const auto& e : doc) {
    REQUIRE(e.size() == 2);
    by_id[e.at("image_id").get<std::int64_t>()] = e.at("caption").get<std::string>();
  }
  // Sorted order: 000123.png (0), COCO_val2014_000000123456.png (1), picture.png (2: its position).
  REQUIRE(by_id.size() == 3);
  REQUIRE(by_id.at(123) == captions[0]);
  REQUIRE(by_id.at(123456) == captions[1]);
  REQUIRE(by_id.at(2) == captions[2]);
  for (const auto& entry : fs::directory_iterator(out.parent_path()))
    REQUIRE(entry.path().filename() == "results.json");  // no temporary file left
}

TEST_CASE("random-weights bundle: overlays, video, samples and the gallery in headless Chromium", "[caption][gallery]") {
  const fs::path dir = fresh_temp_dir("caption_overlays");
  auto images = darknet_images(2);
  images.push_back((dir / "dog.jpg").string());  // same name as the first: its folder must be made unique
  fs::copy_file(images[0], images[2]);
  const fs::path overlays = dir / "overlays", html = dir / "gallery.html";
  const auto r = run_satcap(args_with({"caption"}, {images[0], images[1], images[2], "--model", random_bundle("hard").string(),
                                                    "--max-len", "4", "--beam", "2", "--alternatives", "2",
                                                    "--format", "json", "--overlay-dir", overlays.string(), "--video",
                                                    "--samples", "--samples-per-word", "3", "--html", html.string()}));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE_THAT(r.err, Catch::Contains(overlays.string()));
  REQUIRE_THAT(r.err, Catch::Contains(html.string()));
  const json doc = json::parse(r.out);
  REQUIRE(doc.size() == 3);
  std::set<std::string> folders;
  std::size_t pictures = 0;
  for (const auto& e : doc) {
    const std::size_t n = check_json_entry(e, 2);
    pictures += 1 + n;
    // Samples: per word, 3 region indices inside the grid.
    REQUIRE(e.at("samples").size() == n);
    for (const auto& s : e.at("samples")) {
      REQUIRE(s.size() == 3);
      for (const auto& k : s) REQUIRE((k.get<int>() >= 0 && k.get<int>() < 196));
    }
    const fs::path sub = e.at("overlays").get<std::string>();
    REQUIRE(sub.parent_path() == overlays);
    folders.insert(sub.string());
    // One PNG per word, sized like the image scaled to a longer side of 448, the figure, the video.
    const cv::Mat original = cv::imread(e.at("image").get<std::string>());
    std::size_t pngs = 0;
    for (const auto& f : fs::directory_iterator(sub)) {
      const std::string name = f.path().filename().string();
      if (f.path().extension() != ".png" || name == "figure.png") continue;
      ++pngs;
      cv::Mat png = cv::imread(f.path().string());
      REQUIRE(std::max(png.cols, png.rows) == 448);
      REQUIRE(std::abs(png.cols * original.rows - png.rows * original.cols) <= std::max(original.rows, original.cols));
    }
    REQUIRE(pngs == n);
    REQUIRE_FALSE(cv::imread((sub / "figure.png").string()).empty());
    REQUIRE(fs::file_size(sub / "words.avi") > 0);
  }
  REQUIRE(folders.size() == 3);
  REQUIRE(folders.count((overlays / "dog").string()) == 1);
  REQUIRE(folders.count((overlays / "dog-2").string()) == 1);

  // The gallery: every picture decoded, every caption on the page.
  if (!fs::exists(chromium_path()))
    FAIL("Chromium is not installed at " << chromium_path() << ": run tools/setup.sh, or set SATCAP_CHROMIUM");
  const std::string dom = chromium_dom(html, dir);
  const std::string ok = std::to_string(pictures);
  REQUIRE_THAT(dom, Catch::Contains("data-images-ok=\"" + ok + "/" + ok + "\""));
  for (const auto& e : doc) {
    REQUIRE_THAT(dom, Catch::Contains(html_escape(e.at("caption").get<std::string>())));
    REQUIRE_THAT(dom, Catch::Contains(html_escape(e.at("alternatives")[1].at("caption").get<std::string>())));
  }
}

TEST_CASE("a bad image among good ones: reported, the others captioned, exit 6", "[caption]") {
  const fs::path dir = fresh_temp_dir("caption_bad_image");
  const fs::path broken = dir / "broken.jpg";
  write_text_file(broken, "this is not a JPEG");
  const fs::path missing = dir / "missing.png";
  const fs::path list = dir / "list.txt";
  const auto good = darknet_images(2);
  write_text_file(list, good[0] + "\n" + broken.string() + "\n" + missing.string() + "\n" + good[1] + "\n");
  const fs::path out = dir / "captions.json";
  const auto r = run_satcap({"caption", list.string(), "--model", random_bundle().string(), "--max-len", "4",
                             "--batch", "2", "--format", "json", "--out", out.string(), "--html",
                             (dir / "g.html").string()});
  REQUIRE(r.exit_code == 6);
  REQUIRE_THAT(r.err, Catch::Contains("error: " + broken.string() + ":"));
  REQUIRE_THAT(r.err, Catch::Contains("error: " + missing.string() + ":"));
  const json doc = json::parse(read_text_file(out));
  REQUIRE(doc.size() == 2);
  REQUIRE(doc[0].at("image") == good[0]);
  REQUIRE(doc[1].at("image") == good[1]);
  REQUIRE(fs::exists(dir / "g.html"));
}

TEST_CASE("a wrong or mismatched model folder is a model error (exit 4) naming it", "[caption]") {
  const fs::path dir = fresh_temp_dir("caption_bad_model");
  const std::string image = darknet_images(1)[0];
  const auto none = run_satcap({"caption", image, "--model", (dir / "nowhere").string()});
  REQUIRE(none.exit_code == 4);
  REQUIRE_THAT(none.err, Catch::Contains((dir / "nowhere").string()));
  REQUIRE(none.out.empty());

  // A bundle whose features came from another encoder (its identity edited): refused.
  const fs::path copy = dir / "other";
  fs::copy(random_bundle(), copy);
  json config = json::parse(read_text_file(copy / "config.json"));
  config["encoder"]["identity"] = "some/other:encoder";
  write_text_file(copy / "config.json", config.dump(2));
  const auto other = run_satcap({"caption", image, "--model", copy.string()});
  REQUIRE(other.exit_code == 4);
  REQUIRE_THAT(other.err, Catch::Contains(copy.string()));
  REQUIRE_THAT(other.err, Catch::Contains("some/other:encoder"));
}

TEST_CASE("an overlay folder or output file that cannot be written is an output error (exit 5)", "[caption]") {
  const fs::path dir = fresh_temp_dir("caption_bad_output");
  const fs::path file = dir / "a-file";
  write_text_file(file, "x");
  const std::string image = darknet_images(1)[0];
  const std::string model = random_bundle().string();
  // Below a regular file: no folder can be made there (also when running as root).
  const fs::path overlays = file / "overlays";
  const auto r = run_satcap({"caption", image, "--model", model, "--overlay-dir", overlays.string()});
  REQUIRE(r.exit_code == 5);
  REQUIRE_THAT(r.err, Catch::Contains(overlays.string()));
  const auto o = run_satcap({"caption", image, "--model", model, "--out", (file / "captions.txt").string()});
  REQUIRE(o.exit_code == 5);
  REQUIRE_THAT(o.err, Catch::Contains((file / "captions.txt").string()));
  const auto h = run_satcap({"caption", image, "--model", model, "--html", dir.string()});
  REQUIRE(h.exit_code == 5);
}

TEST_CASE("the embedded default model captions the shipped samples end to end", "[caption][default-model]") {
  const fs::path model = default_model_dir();
  REQUIRE(fs::exists(model / "config.json"));  // models/default is committed (trained on scenes)
  const fs::path dir = fresh_temp_dir("caption_default_model");
  const fs::path samples = source_dir() / "datasets" / "samples";
  const auto r = run_satcap({"caption", samples.string(), "--format", "json", "--beam", "3", "--overlay-dir",
                             (dir / "overlays").string(), "--html", (dir / "gallery.html").string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const json doc = json::parse(r.out);
  REQUIRE(doc.size() >= 2);
  bool scene_seen = false;
  for (const auto& e : doc) {
    const std::size_t n = check_json_entry(e, 1);
    REQUIRE(n >= 1);
    REQUIRE(e.at("finished").get<bool>());
    const std::string caption = e.at("caption");
    REQUIRE(caption.find("<unk>") == std::string::npos);
    REQUIRE(fs::is_directory(e.at("overlays").get<std::string>()));
    // scene-1.jpg holds a large black star, a large blue square and a large red hexagon
    // (datasets/README.md). The default model (2 epochs on 1,000 scenes) does not yet name them
    // reliably, but a model trained on scenes must at least describe their size.
    if (fs::path(e.at("image").get<std::string>()).filename() == "scene-1.jpg") {
      scene_seen = true;
      const auto words = words_of(caption);
      CHECK(std::find(words.begin(), words.end(), "large") != words.end());
    }
  }
  REQUIRE(scene_seen);
  REQUIRE(fs::file_size(dir / "gallery.html") > 0);
}

TEST_CASE("captioning under bf16 autocast on the CPU: valid output, scores near float32's, the same objects",
          "[caption][default-model]") {
  const fs::path samples = source_dir() / "datasets" / "samples";
  auto run = [&](const std::string& precision) {
    return run_satcap({"caption", samples.string(), "--format", "json", "--beam", "3", "--precision", precision});
  };
  const auto fp32 = run("fp32"), bf16 = run("bf16");
  INFO(fp32.err << bf16.err);
  REQUIRE(fp32.exit_code == 0);
  REQUIRE(bf16.exit_code == 0);
  const json a = json::parse(fp32.out), b = json::parse(bf16.out);
  REQUIRE(a.size() == b.size());
  REQUIRE(a.size() >= 2);
  bool moved = false;  // autocast really ran: some score is not float32's to the last bit
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].at("caption") << " / " << b[i].at("caption"));
    check_json_entry(b[i], 1);  // attention rows of the right size, each summing to 1 (float32 softmax)
    // bfloat16 rounds the products: the best caption's log-probability moves by a few percent
    // (measured: -5.09 / -5.00 and -4.67 / -4.37), and a close second may win (a relation word).
    const double s32 = a[i].at("score").get<double>(), s16 = b[i].at("score").get<double>();
    CHECK(std::abs(s16 - s32) < 0.15 * std::abs(s32));
    moved = moved || s16 != s32;
    if (fs::path(b[i].at("image").get<std::string>()).filename() == "scene-1.jpg") {
      const auto words = words_of(b[i].at("caption").get<std::string>());
      for (const char* w : {"star", "hexagon"}) CHECK(std::find(words.begin(), words.end(), w) != words.end());
    }
  }
  CHECK(moved);
  const auto fp16 = run("fp16");
  CHECK(fp16.exit_code == 2);
  CHECK_THAT(fp16.err, Catch::Contains("--device cuda"));
}
