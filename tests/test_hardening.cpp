// Issue 19, "Found": each case here failed before its fix (data destroyed, a crash or hang, a
// stack trace shown, an error hidden, bad input accepted), as a user of the binary met it. The
// binary is run where the exit code, the message or the files left are the point; the library is
// called directly where that is enough. docs/hardening.md lists every case with its test.
#include "testing.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <limits>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "satcap/data/feature_store.h"
#include "satcap/model/bundle.h"
#include "satcap/runtime/atomic_file.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/json_value.h"
#include "satcap/runtime/sha256.h"
#include "satcap/runtime/torch_error.h"
#include "satcap/train/train_options.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace satcap;

namespace {

std::string dog() { return (source_dir() / "datasets/samples/dog.jpg").string(); }

// A copy of the shipped model whose config.json `edit` changes.
fs::path model_copy(const fs::path& dir, const std::string& name,
                    const std::function<void(nlohmann::json&)>& edit = nullptr) {
  const fs::path m = dir / name;
  fs::copy(source_dir() / "models/default", m, fs::copy_options::recursive);
  if (edit) {
    auto j = nlohmann::json::parse(read_text_file(m / "config.json"));
    edit(j);
    write_text_file(m / "config.json", j.dump(2));
  }
  return m;
}

// No LibTorch internals in what a user reads.
void require_no_trace(const std::string& err) {
  CHECK_THAT(err, !Catch::Contains("Exception raised from") && !Catch::Contains("frame #") &&
                      !Catch::Contains("Traceback of TorchScript") && !Catch::Contains("terminate called"));
}

Bundle tiny_bundle() {
  Bundle b;
  b.vocab = Vocabulary::build({{"a", "red", "circle"}, {"a", "blue", "square"}}, VocabOptions{1, 10, 0});
  b.decoder_options.vocab_size = static_cast<int>(b.vocab.size());
  b.decoder_options.feature_dim = 6;
  b.decoder_options.regions = 4;
  b.decoder_options.embed_dim = 8;
  b.decoder_options.attention_dim = 8;
  b.decoder_options.hidden_dim = 12;
  at::manual_seed(3);
  b.decoder = Decoder(b.decoder_options);
  b.encoder = {{"identity", "test-encoder-v1"}, {"grid", {2, 2}}, {"dim", 6}};
  return b;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no satcap::Error)";
}

}  // namespace

TEST_CASE("an output never replaces an input of the same run", "[harden]") {
  const fs::path dir = fresh_temp_dir("harden_output_is_input");
  const fs::path img = dir / "a.jpg";
  fs::copy_file(dog(), img);
  const std::string before = read_text_file(img);
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"caption", img.string(), "--out", img.string()},
           {"caption", img.string(), "--html", img.string()},
           {"caption", img.string(), "--out", (dir / "." / "a.jpg").string()},  // another spelling
           {"encode", img.string(), "--out", img.string()}}) {
    auto r = run_satcap(args);
    INFO(args[0] << " " << args[2] << " " << args[3] << ": " << r.err);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("would destroy"));
    CHECK(read_text_file(img) == before);
  }
  // A hard link is the same file under another name.
  fs::create_hard_link(img, dir / "link.jpg");
  auto linked = run_satcap({"caption", img.string(), "--out", (dir / "link.jpg").string()});
  CHECK(linked.exit_code == 2);
  CHECK(read_text_file(img) == before);

  // score --per-image onto the annotations or the results.
  const fs::path ann = dir / "ann.json", res = dir / "res.json";
  write_text_file(ann, R"({"annotations": [{"image_id": 1, "caption": "a dog on grass"}]})");
  write_text_file(res, R"([{"image_id": 1, "caption": "a dog"}])");
  const std::string ann_before = read_text_file(ann), res_before = read_text_file(res);
  for (const fs::path& target : {ann, res}) {
    auto r = run_satcap({"score", "--annotations", ann.string(), "--results", res.string(), "--per-image", target.string()});
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("--per-image"));
  }
  CHECK(read_text_file(ann) == ann_before);
  CHECK(read_text_file(res) == res_before);
  // Another file is written as before.
  auto ok = run_satcap({"score", "--annotations", ann.string(), "--results", res.string(), "--per-image",
                        (dir / "per.json").string()});
  CHECK(ok.exit_code == 0);
  CHECK(fs::exists(dir / "per.json"));
}

TEST_CASE("train --out over an earlier run is refused without --overwrite, stale temporaries go", "[harden]") {
  const fs::path dir = fresh_temp_dir("harden_train_overwrite");
  const fs::path out = dir / "run";
  fs::create_directories(out / "model");
  write_text_file(out / "model" / "config.json", "{}");
  write_text_file(out / "train_log.jsonl", "{\"event\": \"step\"}\n");
  const std::string stale = "checkpoint.pt.tmp-" + std::to_string(dead_pid());
  write_text_file(out / stale, "half a checkpoint");
  const std::string live = "checkpoint.pt.tmp-" + std::to_string(getpid());  // a live writer's: kept
  write_text_file(out / live, "being written");
  auto r = run_satcap({"train", "--data", (dir / "no-such-data.json").string(), "--out", out.string()});
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("--overwrite") && Catch::Contains("--resume") && Catch::Contains("train_log.jsonl"));
  CHECK(fs::exists(out / "model" / "config.json"));
  CHECK(read_text_file(out / "train_log.jsonl") == "{\"event\": \"step\"}\n");
  CHECK_FALSE(fs::exists(out / stale));  // the killed writer's file is cleaned up
  CHECK(fs::exists(out / live));
  fs::remove(out / live);

  // --resume with --overwrite contradicts itself.
  auto both = run_satcap({"train", "--data", (dir / "no-such-data.json").string(), "--out", out.string(), "--resume",
                          "--overwrite"});
  CHECK(both.exit_code == 2);
  CHECK(fs::exists(out / "train_log.jsonl"));
  // --overwrite deletes the run's files (then the missing data set stops it), and keeps others.
  write_text_file(out / "notes.txt", "mine");
  auto over = run_satcap({"train", "--data", (dir / "no-such-data.json").string(), "--out", out.string(), "--overwrite"});
  INFO(over.err);
  CHECK(over.exit_code == 3);
  CHECK_FALSE(fs::exists(out / "train_log.jsonl"));
  CHECK_FALSE(fs::exists(out / "model"));
  CHECK(read_text_file(out / "notes.txt") == "mine");
}

TEST_CASE("encode --out on a full disk exits 5 naming the file and leaves no temporary", "[harden]") {
  const fs::path dir = fresh_temp_dir("harden_encode_full");
  RunOptions limited;
  limited.file_size_limit = 4096;  // the features of one image are ~450 kB
  auto r = run_satcap_with({"encode", dog(), "--out", (dir / "f.pt").string()}, limited);
  INFO(r.err);
  CHECK(r.exit_code == 5);
  CHECK_THAT(r.err, Catch::Contains((dir / "f.pt").string()));
  require_no_trace(r.err);
  CHECK(fs::is_empty(dir));
}

TEST_CASE("a model's config.json names only regular files inside its folder", "[harden]") {
  const fs::path dir = fresh_temp_dir("harden_bundle_names");
  auto expect = [&](const fs::path& model, const std::string& named) {
    RunOptions quick;
    quick.timeout_s = 60;  // a FIFO once hung here forever
    auto r = run_satcap_with({"caption", dog(), "--model", model.string()}, quick);
    INFO(model << ": " << r.err);
    CHECK_FALSE(r.timed_out);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains("config.json") && Catch::Contains(named));
  };
  expect(model_copy(dir, "abs", [](auto& j) { j["vocab"] = "/dev/zero"; }), "/dev/zero");
  expect(model_copy(dir, "up", [](auto& j) { j["weights"] = "../abs/weights.pt"; }), "../abs/weights.pt");
  const fs::path fifo = model_copy(dir, "fifo", [](auto& j) { j["weights"] = "pipe"; });
  REQUIRE(::mkfifo((fifo / "pipe").c_str(), 0600) == 0);
  expect(fifo, "pipe");
}

TEST_CASE("bad values in a model's config.json exit 4 naming the file and the key", "[harden]") {
  const fs::path dir = fresh_temp_dir("harden_bundle_values");
  struct Case {
    std::string name;
    std::function<void(nlohmann::json&)> edit;
    std::string key;
  };
  const std::vector<Case> cases{
      {"wrap", [](auto& j) { j["format_version"] = 4294967297LL; }, "\"format_version\""},
      {"fraction", [](auto& j) { j["decoder"]["hidden_dim"] = 256.5; }, "\"hidden_dim\""},
      {"type", [](auto& j) { j["decoder"]["attention"] = 5; }, "\"attention\""},
      {"string", [](auto& j) { j["satcap_version"] = 7; }, "\"satcap_version\""},
      {"huge", [](auto& j) { j["decoder"]["hidden_dim"] = 1000000000; }, "hidden_dim"},
  };
  for (const auto& c : cases) {
    auto r = run_satcap({"caption", dog(), "--model", model_copy(dir, c.name, c.edit).string()});
    INFO(c.name << ": " << r.err);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains((dir / c.name / "config.json").string()) && Catch::Contains(c.key));
    CHECK_THAT(r.err, !Catch::Contains("type must be"));  // the JSON library's raw message
    require_no_trace(r.err);
  }
  // The reader itself: integers integral and in range.
  CHECK_THROWS_WITH(json_as<int>(nlohmann::json(4294967297LL), "k", "f.json", ExitCode::model),
                    Catch::Contains("f.json") && Catch::Contains("\"k\""));
  CHECK_THROWS_AS(json_as<int>(nlohmann::json(2.5), "k", "f.json", ExitCode::model), ModelError);
  CHECK_THROWS_AS(json_as<unsigned>(nlohmann::json(-1), "k", "f.json", ExitCode::input), InputError);
  CHECK(json_as<int>(nlohmann::json(256), "k", "f.json", ExitCode::model) == 256);
}

TEST_CASE("a corrupt weights file and a too large decoder show no LibTorch stack trace", "[harden]") {
  const fs::path dir = fresh_temp_dir("harden_traces");
  const fs::path m = model_copy(dir, "cut");
  fs::resize_file(m / "weights.pt", 1000);
  // Without "files" the checksums do not catch it: the archive reader does.
  auto j = nlohmann::json::parse(read_text_file(m / "config.json"));
  j.erase("files");
  write_text_file(m / "config.json", j.dump());
  auto r = run_satcap({"caption", dog(), "--model", m.string()});
  INFO(r.err);
  CHECK(r.exit_code == 4);
  CHECK_THAT(r.err, Catch::Contains("weights.pt"));
  require_no_trace(r.err);

  // exception_text keeps the message and drops the frames.
  const std::runtime_error traced("bad archive\nException raised from valid at ./caffe2/serialize/x.cc:177\nframe #0: f");
  CHECK(exception_text(traced) == "bad archive");
}

TEST_CASE("standard output that cannot be written is exit 5", "[harden]") {
  const fs::path dir = fresh_temp_dir("harden_stdout_full");
  const fs::path ann = dir / "ann.json", res = dir / "res.json";
  write_text_file(ann, R"({"annotations": [{"image_id": 1, "caption": "a dog on grass"}]})");
  write_text_file(res, R"([{"image_id": 1, "caption": "a dog"}])");
  RunOptions full;
  full.stdout_path = "/dev/full";
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"info"},
           {"score", "--annotations", ann.string(), "--results", res.string()},
           {"encode", dog(), "--json"}}) {
    auto r = run_satcap_with(args, full);
    INFO(args[0] << ": " << r.err);
    CHECK(r.exit_code == 5);
    CHECK_THAT(r.err, Catch::Contains("standard output"));
  }
}

TEST_CASE("an unknown subcommand is named", "[harden]") {
  auto r = run_satcap({"frobnicate", "x"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("'frobnicate'"));
}

TEST_CASE("a bundle records checksums of its files: altered, swapped or non-finite files are refused", "[harden][bundle]") {
  const fs::path dir = fresh_temp_dir("harden_bundle_checksums");
  Bundle b = tiny_bundle();
  save_bundle(b, dir / "a");
  const auto config = nlohmann::json::parse(read_text_file(dir / "a/config.json"));
  REQUIRE(config.contains("files"));
  for (const char* name : {"weights.pt", "vocab.json"}) {
    INFO(name);
    const auto& f = config["files"].at(name);
    CHECK(f.at("bytes") == fs::file_size(dir / "a" / name));
    CHECK(f.at("sha256") == sha256_hex(read_text_file(dir / "a" / name)));
  }
  REQUIRE_NOTHROW(load_bundle(dir / "a"));

  // One byte of the weights changed (same size): refused naming the file.
  fs::copy(dir / "a", dir / "flip", fs::copy_options::recursive);
  std::string w = read_text_file(dir / "flip/weights.pt");
  w[w.size() / 2] = static_cast<char>(w[w.size() / 2] ^ 1);
  write_text_file(dir / "flip/weights.pt", w);
  CHECK_THAT(error_of([&] { load_bundle(dir / "flip"); }), Catch::Contains("weights.pt") && Catch::Contains("altered"));

  // The vocabulary of another model of the same size.
  Bundle other = tiny_bundle();
  other.vocab = Vocabulary::build({{"a", "green", "star"}, {"a", "pink", "moon"}}, VocabOptions{1, 10, 0});
  REQUIRE(other.vocab.size() == b.vocab.size());
  save_bundle(other, dir / "other");
  fs::copy(dir / "a", dir / "swap", fs::copy_options::recursive);
  fs::copy_file(dir / "other/vocab.json", dir / "swap/vocab.json", fs::copy_options::overwrite_existing);
  CHECK_THAT(error_of([&] { load_bundle(dir / "swap"); }), Catch::Contains("vocab.json"));

  // Bundles without "files" (older ones, models/default) still load.
  fs::copy(dir / "a", dir / "old", fs::copy_options::recursive);
  auto j = config;
  j.erase("files");
  write_text_file(dir / "old/config.json", j.dump(2));
  CHECK_NOTHROW(load_bundle(dir / "old"));

  // Weights all NaN: refused naming the file and a tensor, checksums or not.
  Bundle nan = tiny_bundle();
  {
    at::NoGradGuard no_grad;
    for (auto& p : nan.decoder->parameters()) p.fill_(std::numeric_limits<float>::quiet_NaN());
  }
  save_bundle(nan, dir / "nan");
  CHECK_THAT(error_of([&] { load_bundle(dir / "nan"); }), Catch::Contains("weights.pt") && Catch::Contains("non-finite"));
}

TEST_CASE("feature store rows are matched to images by content, not by name", "[harden][store]") {
  const fs::path dir = fresh_temp_dir("harden_store_identity");
  fs::copy_file(dog(), dir / "0.jpg");
  write_text_file(dir / "1.jpg", "not really an image, but content all the same");
  FeatureStoreSpec spec;
  spec.encoder_identity = "enc";
  spec.encoder_description = {{"identity", "enc"}};
  spec.regions = 2;
  spec.dim = 3;
  spec.keys = {"0.jpg", "1.jpg"};
  {
    FeatureStore s = FeatureStore::create_or_resume(dir / "store", spec);
    s.write(0, at::ones({2, 3}), stamp_file(dir / "0.jpg"));
    s.write(1, at::ones({2, 3}), stamp_file(dir / "1.jpg"));
    s.finalize();
  }
  FeatureStore s = FeatureStore::open(dir / "store");
  const std::vector<std::pair<std::size_t, fs::path>> rows{{0, dir / "0.jpg"}, {1, dir / "1.jpg"}};
  CHECK(find_changed_sources(s, rows).changed.empty());
  CHECK_NOTHROW(require_current_sources(s, rows, nullptr));
  // Another data set under the same names: 1.jpg now holds other content.
  write_text_file(dir / "1.jpg", "another image under the same name, of another size");
  const auto changed = find_changed_sources(s, rows);
  REQUIRE(changed.changed.size() == 1);
  CHECK(changed.changed[0] == 1);
  CHECK_THAT(error_of([&] { require_current_sources(s, rows, nullptr); }),
             Catch::Contains("1.jpg") && Catch::Contains("prepare"));
  // A copy with new times but the same bytes is the same image.
  const auto t = fs::last_write_time(dir / "0.jpg");
  fs::last_write_time(dir / "0.jpg", t + std::chrono::hours(1));
  CHECK(check_source(dir / "0.jpg", s.source(0)) == SourceState::same);
}

TEST_CASE("resuming keeps the run's options: changes that may happen are applied and said, others refused", "[harden][train]") {
  TrainOptions recorded;
  recorded.batch_size = 64;
  recorded.epochs = 20;
  const nlohmann::json rec = to_json(recorded);

  TrainOptions now = recorded;
  now.epochs = 30;
  auto r = resume_options(rec, now, nlohmann::json{{"epochs", 30}}, "out/checkpoint.pt");
  CHECK(r.options.epochs == 30);
  REQUIRE(r.applied.size() == 1);
  CHECK_THAT(r.applied[0], Catch::Contains("--epochs 30") && Catch::Contains("20"));

  now.batch_size = 32;
  CHECK_THROWS_WITH(resume_options(rec, now, nlohmann::json{{"epochs", 30}, {"batch_size", 32}}, "out/checkpoint.pt"),
                    Catch::Contains("--batch 32") && Catch::Contains("64") && Catch::Contains("out/checkpoint.pt"));
  // Options not given now are the run's, whatever their defaults are now.
  auto kept = resume_options(rec, TrainOptions{}, nlohmann::json::object(), "out/checkpoint.pt");
  CHECK(kept.options.epochs == 20);
  CHECK(kept.applied.empty());
}

TEST_CASE("a user's TorchScript encoder that throws or changes the batch size is named, without traceback", "[harden][encoder]") {
  const fs::path dir = fresh_temp_dir("harden_torchscript");
  const std::string script = R"(
import json, sys, torch
class Bad(torch.nn.Module):
    def __init__(self, mode: int):
        super().__init__()
        self.mode = mode
        self.conv = torch.nn.Conv2d(3, 8, 1)
    def forward(self, x):
        y = torch.nn.functional.adaptive_avg_pool2d(self.conv(x), 2)
        if self.mode == 0:
            raise RuntimeError("this encoder always fails")
        return torch.cat([y, y], 0)
for mode, name in ((0, "throws"), (1, "batch")):
    torch.jit.script(Bad(mode)).save(sys.argv[1] + "/" + name + ".pt")
    json.dump({"format": "satcap-torchscript-encoder", "format_version": 1, "arch": name, "input_size": [32, 32],
               "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "channel_order": "RGB", "grid": [2, 2], "dim": 8,
               "blocks": ["conv"]}, open(sys.argv[1] + "/" + name + ".json", "w"))
)";
  write_text_file(dir / "make.py", script);
  INFO(shell_output("/usr/bin/python3 '" + (dir / "make.py").string() + "' '" + dir.string() + "' 2>&1"));
  REQUIRE(fs::exists(dir / "batch.pt"));
  for (const auto& [name, says] : std::vector<std::pair<std::string, std::string>>{
           {"throws", "this encoder always fails"}, {"batch", "batch size"}}) {
    auto r = run_satcap({"encode", dog(), "--encoder", (dir / (name + ".pt")).string(), "--grid", "2"});
    INFO(name << ": " << r.err);
    CHECK(r.exit_code == 4);
    CHECK_THAT(r.err, Catch::Contains((dir / (name + ".pt")).string()) && Catch::Contains(says));
    require_no_trace(r.err);
  }
}
