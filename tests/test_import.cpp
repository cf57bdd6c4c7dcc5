// Models of the most used PyTorch tutorial (sgrvinod's a-PyTorch-Tutorial-to-Image-Captioning)
// imported with tools/import_tutorial.py, and torchvision encoders exported with
// tools/export_encoder.py: what the importer refuses, satcap's captions against a Python reference
// decoder written from the tutorial's equations (tools/tutorial/reference_decode.py: greedy,
// caption.py's per-image beam search, satcap's beam search per image), and the encoders' regions
// against Python's. The checkpoints are random-weight fixtures in the tutorial's format, made here
// (tests/import/test_files.py). Needs Debian's python3-torch and python3-torchvision (tools/setup.sh
// installs them); without them the tests WARN and pass.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/serialize.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <map>
#include <regex>
#include <set>
#include <string>

#include "satcap/data/image.h"
#include "satcap/decode/captioner.h"
#include "satcap/model/bundle.h"
#include "satcap/model/encoder.h"
#include "test_util.h"
#include "testing.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace satcap;

namespace {

const std::string kPython = "/usr/bin/python3";

// Whether Debian's Python has torch and torchvision; WARNs when not (the caller then returns).
// Python's torch then runs one thread: on a shared 2-core machine more threads only wait for each other.
bool python_torch_available() {
  ::setenv("OMP_NUM_THREADS", "1", 1);
  static const bool ok =
      fs::exists(kPython) && run_program(kPython, {"-c", "import torch, torchvision"}).exit_code == 0;
  if (!ok) WARN("no /usr/bin/python3 with torch and torchvision (python3-torch, python3-torchvision): skipped");
  return ok;
}

std::string tool(const std::string& relative) { return (source_dir() / relative).string(); }

// Runs a Python script of the repository; requires exit status 0 and returns its output.
CommandResult python_ok(const std::vector<std::string>& args) {
  CommandResult r = run_program(kPython, args);
  INFO("python3 " << args.front() << "\nstdout: " << r.out.substr(0, 2000) << "\nstderr: " << r.err.substr(0, 4000));
  REQUIRE(r.exit_code == 0);
  return r;
}

at::Tensor load_torch_saved(const fs::path& path) {
  const std::string bytes = read_text_file(path);
  return torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end())).toTensor();
}

std::vector<std::string> png_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".png") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

// satcap's captions (caption --format json) against a reference search's, image by image.
struct Agreement {
  int same = 0, total = 0;
  double max_log_prob_diff = 0;  // over the images with the same caption
  std::string differences;       // the others, one line each
};

Agreement agreement(const json& satcap, const json& reference) {
  std::map<std::string, json> ours;
  for (const auto& r : satcap) ours[r.at("image").get<std::string>()] = r;
  Agreement a;
  for (const auto& r : reference) {
    const std::string image = r.at("image").get<std::string>();
    REQUIRE(ours.count(image) == 1);
    const json& s = ours[image];
    ++a.total;
    if (s.at("caption") == r.at("caption")) {
      ++a.same;
      a.max_log_prob_diff =
          std::max(a.max_log_prob_diff, std::abs(s.at("log_prob").get<double>() - r.at("log_prob").get<double>()));
    } else {
      a.differences += "  " + fs::path(image).filename().string() + ": satcap '" + s.at("caption").get<std::string>() +
                       "' (" + std::to_string(s.at("log_prob").get<double>()) + "), reference '" +
                       r.at("caption").get<std::string>() + "' (" + std::to_string(r.at("log_prob").get<double>()) +
                       ")\n";
    }
  }
  return a;
}

json config_of(const fs::path& bundle) { return json::parse(read_text_file(bundle / "config.json")); }

}  // namespace

TEST_CASE("import_tutorial.py refuses what is not a tutorial checkpoint or its word map, naming the file", "[import]") {
  if (!python_torch_available()) return;
  const fs::path dir = fresh_temp_dir("import_refusals");
  const json results = json::parse(python_ok({tool("tests/import/test_files.py"), "refusals", dir.string()}).out);
  const std::map<std::string, std::string> expected{
      {"missing", "missing.pth: no such file"},
      {"random", "bad/random.bin: not a checkpoint of the tutorial"},
      {"state_dict", "bad/state_dict.pth: not a checkpoint of the tutorial: expected utils.save_checkpoint's dict"},
      {"evil", "bad/evil.pth: not a checkpoint of the tutorial (the pickle references posix.system"},
      {"truncated", "bad/truncated.pth: not a checkpoint of the tutorial"},
      {"short_word_map", "bad/wm_short.json: 49 words, but the checkpoint's embedding and fc have 50 rows"},
      {"no_start", "bad/wm_nostart.json: the word map lacks <start>"},
      {"other_word_map", "fx/WORDMAP_other.json: 64 words, but the checkpoint's embedding and fc have 50 rows"},
      {"inconsistent", "bad/inconsistent.pth: decoder tensor fc.weight has shape [51, 28], expected [50, 28]"},
      {"not_a_bundle", "out/not_a_bundle: exists and is not a satcap bundle"}};
  std::set<std::string> seen;
  for (const auto& r : results) {
    const std::string c = r.at("case").get<std::string>();
    INFO(c << ": " << r.at("message").get<std::string>());
    REQUIRE(expected.count(c) == 1);
    seen.insert(c);
    CHECK_THAT(r.at("message").get<std::string>(), Catch::Contains(expected.at(c)));
    CHECK_FALSE(r.at("evil_ran").get<bool>());  // the pickle's os.system was never called
    if (c == "not_a_bundle") {
      CHECK(r.at("code") == 1);  // an output it must not replace
      CHECK(r.at("files") == json::array({"keep.txt"}));
    } else {
      CHECK(r.at("code") == 2);
      CHECK(r.at("files").is_null());  // nothing written
    }
  }
  CHECK(seen.size() == expected.size());

  // The command line itself: exit status 2, the message on stderr.
  const CommandResult cli = run_program(kPython, {tool("tools/import_tutorial.py"), (dir / "bad/state_dict.pth").string(),
                                                  (dir / "fx/WORDMAP_tiny.json").string(), "--out",
                                                  (dir / "cli").string()});
  CHECK(cli.exit_code == 2);
  CHECK_THAT(cli.err, Catch::Contains((dir / "bad/state_dict.pth").string() + ": not a checkpoint of the tutorial"));
  CHECK_FALSE(fs::exists(dir / "cli"));

  // satcap given the checkpoint instead of a bundle says how to import it.
  const auto r = run_satcap({"caption", "--model", (dir / "fx/BEST_checkpoint_tiny.pth.tar").string(),
                             (source_dir() / "datasets/samples/scene-1.jpg").string()});
  CHECK(r.exit_code == 4);
  CHECK_THAT(r.err, Catch::Contains("BEST_checkpoint_tiny.pth.tar: a file, not a model folder"));
  CHECK_THAT(r.err, Catch::Contains("tools/import_tutorial.py"));
}

TEST_CASE("imported tutorial models caption as the Python reference does: greedy, beam 5, the encoder's regions",
          "[import]") {
  if (!python_torch_available()) return;
  at::set_num_threads(1);  // as the commands below: more threads only wait for each other on a shared machine
  const fs::path dir = fresh_temp_dir("import_parity");
  python_ok({tool("tests/import/test_files.py"), "parity", dir.string()});
  const std::vector<std::string> images = png_files(dir / "img");
  REQUIRE(images.size() == 20);

  for (const std::string name : {"tiny", "ft"}) {
    const fs::path bundle = dir / "out" / name;
    const std::string checkpoint = (dir / "fx" / ("BEST_checkpoint_" + name + ".pth.tar")).string();
    const std::string word_map = (dir / "fx" / ("WORDMAP_" + name + ".json")).string();
    python_ok({tool("tools/import_tutorial.py"), checkpoint, word_map, "--out", bundle.string()});

    // The bundle: format 3, the tutorial's decoder options, a checksum and size for every other file.
    const json config = config_of(bundle);
    CHECK(config.at("format_version") == 3);
    const json& d = config.at("decoder");
    CHECK(d.at("init_state") == "linear");
    CHECK(d.at("beta") == "vector");
    CHECK(d.at("attention_activation") == "relu");
    CHECK(d.at("deep_output") == false);
    const std::vector<int> eah = name == "tiny" ? std::vector<int>{24, 20, 28} : std::vector<int>{32, 18, 26};
    CHECK(std::vector<int>{d.at("embed_dim").get<int>(), d.at("attention_dim").get<int>(), d.at("hidden_dim").get<int>()} == eah);
    std::set<std::string> listed, present;
    // Exactly {"<file>": {"sha256": "<64 lowercase hex>", "bytes": N}}, the digest coreutils' own.
    for (const auto& [file, entry] : config.at("files").items()) {
      INFO("files: " << file << ": " << entry.dump());
      listed.insert(file);
      REQUIRE(entry.is_object());
      CHECK(entry.size() == 2);
      REQUIRE(entry.at("bytes").is_number_unsigned());
      CHECK(entry.at("bytes").get<std::uintmax_t>() == fs::file_size(bundle / file));
      const std::string digest = entry.at("sha256").get<std::string>();
      CHECK(std::regex_match(digest, std::regex("[0-9a-f]{64}")));
      if (fs::exists("/usr/bin/sha256sum")) {
        const CommandResult sum = run_program("/usr/bin/sha256sum", {(bundle / file).string()});
        CHECK(sum.out.substr(0, 64) == digest);
      }
    }
    for (const auto& e : fs::directory_iterator(bundle))
      if (e.path().filename() != "config.json") present.insert(e.path().filename().string());
    CHECK(listed == present);
    CHECK(listed.count("encoder.pt") == 1);

    // satcap's captions, greedy and beam 5, as the command runs them.
    auto caption = [&](const std::string& beam) {
      std::vector<std::string> args{"-q", "--threads", "1", "caption", "--model", bundle.string(), "--beam", beam,
                                    "--max-len", "51", "--format", "json"};
      args.insert(args.end(), images.begin(), images.end());
      const CommandResult r = run_satcap(args);
      INFO(r.err);
      REQUIRE(r.exit_code == 0);
      return json::parse(r.out);
    };
    const json greedy = caption("1"), beam5 = caption("5");
    // The reference, image by image, with the images' regions.
    std::vector<std::string> args{tool("tools/tutorial/reference_decode.py"), checkpoint, word_map};
    args.insert(args.end(), images.begin(), images.end());
    args.insert(args.end(), {"--resize", "none", "--ban-satcap", "--search", "greedy,satcap-beam,tutorial-beam",
                             "--beam", "5", "--threads", "1", "--features-out", (dir / (name + "_regions.pt")).string()});
    const json reference = json::parse(python_ok(args).out);

    INFO("fixture " << name);
    std::set<std::string> distinct;
    for (const auto& r : greedy) distinct.insert(r.at("caption").get<std::string>());
    CHECK(distinct.size() >= 5);  // captions that differ by image: the comparisons below are not vacuous
    const Agreement g = agreement(greedy, reference.at("greedy"));
    INFO("greedy: " << g.same << "/" << g.total << "\n" << g.differences);
    CHECK(g.same == 20);
    CHECK(g.max_log_prob_diff < 1e-3);
    const Agreement s = agreement(beam5, reference.at("satcap-beam"));  // the same algorithm in Python
    INFO("beam 5 against satcap's search per image: " << s.same << "/" << s.total << "\n" << s.differences);
    CHECK(s.same == 20);
    CHECK(s.max_log_prob_diff < 1e-3);
    // caption.py's search drops finished hypotheses from the beam (see docs/import.md): it may
    // differ from satcap's on an image whose best caption it cut short.
    const Agreement t = agreement(beam5, reference.at("tutorial-beam"));
    INFO("beam 5 against caption.py's search: " << t.same << "/" << t.total << "\n" << t.differences);
    CHECK(t.same >= 19);

    // The encoder's regions: satcap's TorchScript encoder in the bundle against the checkpoint's
    // own encoder module in Python, on PNGs both sides read and normalise identically.
    const Bundle b = load_bundle(bundle);
    auto encoder = load_bundle_encoder(b, "", c10::Device(c10::kCPU));
    std::vector<cv::Mat> rgb;
    for (const auto& p : images) rgb.push_back(read_image_rgb(p));
    at::Tensor ours;
    {
      at::NoGradGuard no_grad;
      ours = encoder->encode(rgb);
    }
    const at::Tensor theirs = load_torch_saved(dir / (name + "_regions.pt"));
    REQUIRE(ours.sizes() == theirs.sizes());
    const double diff = (ours - theirs).abs().max().item<double>();
    INFO("encoder regions: max |satcap - Python| = " << diff << ", max |Python| = " << theirs.abs().max().item<double>());
    CHECK(diff < 1e-4);
  }

  // The same weights saved in torch.save's legacy format and as if on a GPU import to the same
  // decoder, vocabulary and encoder.
  const Bundle tiny = load_bundle(dir / "out" / "tiny");
  auto tiny_encoder = load_bundle_encoder(tiny, "", c10::Device(c10::kCPU));
  const std::vector<cv::Mat> two{read_image_rgb(images[0]), read_image_rgb(images[7])};
  at::NoGradGuard no_grad;
  const at::Tensor tiny_regions = tiny_encoder->encode(two);
  for (const std::string other : {"legacy", "cuda"}) {
    INFO(other);
    const Bundle b = load_bundle(dir / "out" / other);
    CHECK(b.vocab.size() == tiny.vocab.size());
    CHECK(b.vocab.id("kite") == tiny.vocab.id("kite"));
    auto mine = tiny.decoder->named_parameters();
    for (const auto& p : b.decoder->named_parameters()) CHECK(at::equal(p.value(), mine[p.key()]));
    CHECK(at::equal(load_bundle_encoder(b, "", c10::Device(c10::kCPU))->encode(two), tiny_regions));
  }
}

TEST_CASE("export_encoder.py with a state dict of one's own: satcap's regions are torchvision's", "[import]") {
  if (!python_torch_available()) return;
  at::set_num_threads(1);
  const fs::path dir = fresh_temp_dir("import_export_encoder");
  const json made = json::parse(python_ok({tool("tests/import/test_files.py"), "resnet", dir.string()}).out);
  const std::string weights = (dir / "r18.pth").string();
  python_ok({tool("tools/export_encoder.py"), (dir / "r18.pt").string(), "--arch", "resnet18", "--weights", weights,
             "--input-size", "256", "--grid", "7"});
  EncoderOptions options;
  options.source = (dir / "r18.pt").string();
  options.grid = 7;
  auto encoder = load_encoder(options);
  CHECK(encoder->describe().at("weights") == "r18.pth");
  at::Tensor ours;
  {
    at::NoGradGuard no_grad;
    ours = encoder->encode({read_image_rgb(made.at("photo").get<std::string>())});
  }
  const at::Tensor theirs = load_torch_saved(dir / "r18_regions.pt");  // [1, 49, 512], pooled from 8x8
  REQUIRE(ours.sizes() == theirs.sizes());
  const double diff = (ours - theirs).abs().max().item<double>();
  INFO("max |satcap - torchvision| = " << diff);
  CHECK(diff < 1e-4);

  // Weights of another network are refused naming the file.
  const CommandResult wrong = run_program(kPython, {tool("tools/export_encoder.py"), (dir / "r50.pt").string(), "--arch",
                                                    "resnet50", "--weights", weights});
  CHECK(wrong.exit_code != 0);
  CHECK_THAT(wrong.err, Catch::Contains(weights + ": not the weights of a torchvision resnet50"));
  CHECK_FALSE(fs::exists(dir / "r50.pt"));
}
