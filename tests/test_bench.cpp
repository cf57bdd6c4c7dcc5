#include "testing.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>
#include <sstream>

#include <unistd.h>

#include "bench/bench.h"
#include "satcap/runtime/error.h"
#include "test_util.h"

using namespace satcap;

TEST_CASE("benchmark caption lengths are COCO-like, deterministic, and the Python scripts draw the same", "[bench]") {
  auto a = bench_caption_lengths(3, 64);
  REQUIRE(a.size() == 64);
  REQUIRE(a == bench_caption_lengths(3, 64));
  REQUIRE(a != bench_caption_lengths(4, 64));
  for (auto w : a) {
    REQUIRE(w >= 8);
    REQUIRE(w <= 22);
  }
  auto many = bench_caption_lengths(0, 5000);
  double mean = std::accumulate(many.begin(), many.end(), 0.0) / static_cast<double>(many.size());
  REQUIRE(mean > 10.0);
  REQUIRE(mean < 12.5);

  const std::filesystem::path python = "/usr/bin/python3";
  if (!std::filesystem::exists(python)) return;
  // benchutil imports no torch: this is quick.
  std::string cmd = python.string() + " -c \"import sys; sys.path.insert(0, '" +
                    (source_dir() / "tools" / "bench").string() +
                    "'); import benchutil; print(','.join(map(str, benchutil.caption_lengths(3, 64))))\"";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  REQUIRE(pipe);
  std::string out;
  char buf[4096];
  while (size_t got = fread(buf, 1, sizeof buf, pipe.get())) out.append(buf, got);
  std::ostringstream expected;
  for (size_t i = 0; i < a.size(); ++i) expected << (i ? "," : "") << a[i];
  REQUIRE(out.substr(0, out.find('\n')) == expected.str());
}

TEST_CASE("the training FLOP count adds up per term and grows with the words", "[bench]") {
  const DecoderOptions s = coco_scale_decoder();
  std::vector<int64_t> ten(64, 10), twenty(64, 20);
  auto t10 = training_flops(s, ten, 1000);
  auto t20 = training_flops(s, twenty, 1000);
  REQUIRE(t10.size() == t20.size());
  double sum = 0;
  for (const auto& t : t10) {
    REQUIRE(t.forward > 0);
    REQUIRE(t.backward_factor >= 0);
    REQUIRE(t.backward_factor <= 2);
    sum += t.forward * (1 + t.backward_factor);
  }
  REQUIRE(total_flops(t10) == Approx(sum));
  REQUIRE(total_flops(t20) > total_flops(t10));
  // The per-step part doubles with (words + 1) 11 -> 21 steps; the per-caption part stays.
  REQUIRE(total_flops(t20) < 2.0 * total_flops(t10));
  // The LSTM gates at batch 64, 11 steps: 2 * (m + D + H) * 4H per step, 3x with backward.
  double lstm = 0;
  for (const auto& t : t10)
    if (t.name.rfind("LSTM", 0) == 0) lstm = t.total();
  REQUIRE(lstm == Approx(64.0 * 11 * (2.0 * (512 + 2048 + 512) * 4 * 512 + 10 * 512) * 3));
  // Hard attention has no weighted context sum; a model without deep output has no L_h, L_z.
  DecoderOptions h = s;
  h.attention = AttentionKind::hard;
  REQUIRE(total_flops(training_flops(h, ten, 1000)) < total_flops(t10));
  DecoderOptions plain = s;
  plain.deep_output = false;
  REQUIRE(total_flops(training_flops(plain, ten, 1000)) < total_flops(t10));
}

TEST_CASE("bench options are validated", "[bench]") {
  BenchOptions o;
  REQUIRE_NOTHROW(o.validate());
  o.parts = {"train", "nonsense"};
  REQUIRE_THROWS_AS(o.validate(), UsageError);
  o.parts = {};
  o.quick = o.smoke = true;
  REQUIRE_THROWS_AS(o.validate(), UsageError);
  o.quick = false;
  o.attention = AttentionRuns::hard;
  o.batches = {0};
  REQUIRE_THROWS_AS(o.validate(), UsageError);
  REQUIRE(run_satcap({"bench", "--only", "nonsense"}).exit_code == 2);
  // Attention kinds and precisions are enums: a bad name is refused by the command line, naming the option.
  for (const char* option : {"--attention", "--precision"}) {
    auto r = run_satcap({"bench", option, "medium"});
    INFO(r.err);
    REQUIRE(r.exit_code == 2);
    REQUIRE_THAT(r.err, Catch::Contains(option));
  }
}

TEST_CASE("satcap bench --smoke --json reports every measurement as a finite positive number", "[bench]") {
  auto r = run_satcap({"bench", "--smoke", "--json", "--threads", "1"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto report = nlohmann::json::parse(r.out);
  REQUIRE(report["mode"] == "smoke");
  const bool python = !report.contains("python_error");
  std::vector<std::string> keys = {"sgemm_gflops", "train_words_per_s_b32", "train_words_per_s_b64",
                                   "train_words_per_s_b64_hard", "train_fraction_of_peak_b64",
                                   "train_fraction_of_peak_b64_hard", "beam5_captions_per_s", "beam5_captions_per_s_hard"};
  if (python) {
    for (const char* k : {"train_vs_common", "train_vs_hoisted", "train_vs_common_hard", "train_vs_hoisted_hard",
                          "beam5_vs_per_image", "beam5_vs_per_image_hard"}) {
      keys.push_back(k);
    }
  }
  if (!report["prepare"].contains("error")) keys.push_back("prepare_vs_forward");
  for (const auto& k : keys) {
    INFO(k);
    REQUIRE(report.contains(k));
    REQUIRE(report[k].is_number());
    REQUIRE(std::isfinite(report[k].get<double>()));
    REQUIRE(report[k].get<double>() > 0);
  }
  // The same batches on both sides of the Python comparison; satcap's are timed twice, before and
  // after the Python runs (its words/s is over both).
  if (python) {
    const auto& mine = report["train"]["satcap_b64"];
    REQUIRE(mine.contains("parts_words_per_s"));
    REQUIRE(mine["parts_words_per_s"].size() == 2);
    REQUIRE(mine["words"].get<double>() == 2 * report["train"]["common_b64"]["words"].get<double>());
    const double a = mine["parts_words_per_s"][0].get<double>(), b = mine["parts_words_per_s"][1].get<double>();
    CHECK(mine["words_per_s"].get<double>() >= std::min(a, b) * (1 - 1e-9));
    CHECK(mine["words_per_s"].get<double>() <= std::max(a, b) * (1 + 1e-9));
  }
  for (const char* k : {"cpu", "cores", "threads", "blas", "libtorch", "device"}) REQUIRE(report["machine"].contains(k));
  REQUIRE(report["machine"]["threads"] == 1);
  REQUIRE(report["targets"].is_array());
  REQUIRE(!report["targets"].empty());
}

TEST_CASE("satcap bench --save writes the JSON report beside the table, --trace a Chrome trace", "[bench]") {
  const auto dir = fresh_temp_dir("bench_save_" + std::to_string(::getpid()));
  const auto saved = dir / "report.json", trace = dir / "trace.json";
  auto r = run_satcap({"bench", "--smoke", "--only", "sgemm", "train", "--attention", "soft", "--threads", "1",
                       "--save", saved.string(), "--trace", trace.string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE_THAT(r.out, Catch::Contains("sgemm"));  // the table on stdout
  auto report = nlohmann::json::parse(read_text_file(saved));
  REQUIRE(report["sgemm_gflops"].get<double>() > 0);
  REQUIRE(report["train_words_per_s_b64"].get<double>() > 0);
  auto events = nlohmann::json::parse(read_text_file(trace));
  const auto& list = events.is_array() ? events : events["traceEvents"];
  REQUIRE(list.size() > 10);  // the timed steps' operators
  REQUIRE(run_satcap({"bench", "--smoke", "--only", "sgemm", "--save", (dir / "no/such/dir/r.json").string()}).exit_code == 5);
}

TEST_CASE("satcap bench's growth runs report time and peak memory per size, and what the peak is made of", "[bench]") {
  auto r = run_satcap({"bench", "--smoke", "--json", "--only", "growth", "--growth-sizes", "10,20", "--threads", "1"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto report = nlohmann::json::parse(r.out);
  const auto& g = report["growth"];
  REQUIRE_FALSE(g.contains("error"));
  REQUIRE(g["runs"].size() == 2);
  for (const auto& run : g["runs"]) {
    INFO(run.dump());
    REQUIRE_FALSE(run.contains("error"));
    for (const char* k : {"prepare_ms_per_image", "train_ms_per_image", "prepare_peak_rss_mib", "train_peak_rss_mib",
                          "train_max_rss_anon_mib", "prepare_max_rss_anon_mib"})
      REQUIRE(run[k].get<double>() > 0);
    // Each part of the resident set, at any sample, is at most the peak.
    for (const char* part : {"train_max_rss_anon_mib", "train_max_rss_file_mib"}) {
      REQUIRE(run[part].get<double>() >= 0);
      CHECK(run[part].get<double>() <= run["train_peak_rss_mib"].get<double>());
    }
  }
  REQUIRE(g["runs"][0]["images"] == 10);
  REQUIRE(g["runs"][1]["images"] == 20);
  for (const char* k : {"prepare_time_per_image_growth", "train_time_per_image_growth", "train_peak_rss_growth"})
    REQUIRE(std::isfinite(g[k].get<double>()));
}

TEST_CASE("the report never prints a missed target as equal to it", "[bench]") {
  nlohmann::json r = {{"mode", "quick"},
                      {"machine", {{"cpu", "test"}, {"cores", 2}, {"threads", 2}, {"device", "cpu"}}},
                      {"seconds", 1.0}};
  r["targets"] = nlohmann::json::array(
      {{{"label", "missed by a little"}, {"value", 0.4958}, {"target", 0.5}, {"unit", ""}, {"met", false}},
       {{"label", "met"}, {"value", 0.6234}, {"target", 0.5}, {"unit", ""}, {"met", true}},
       {{"label", "missed by a lot"}, {"value", 0.4123}, {"target", 0.5}, {"unit", ""}, {"met", false}}});
  const std::string text = format_bench_report(r);
  INFO(text);
  CHECK(text.find("0.496 >= 0.50  NOT met") != std::string::npos);
  CHECK(text.find("0.62 >= 0.50  met") != std::string::npos);
  CHECK(text.find("0.41 >= 0.50  NOT met") != std::string::npos);
}

TEST_CASE("the device-generic training step launches at most half the operations per decoder step it did", "[bench][ops]") {
  for (AttentionKind kind : {AttentionKind::soft, AttentionKind::hard}) {
    DecoderOptions o = coco_scale_decoder(kind);
    o.vocab_size = 60;
    o.feature_dim = 24;
    o.regions = 9;
    o.embed_dim = o.attention_dim = o.hidden_dim = 16;
    const StepOpCount c = count_step_ops(o, 4);
    std::ostringstream names;
    for (const auto& [name, n] : c.by_name) names << name << " " << n << "\n";
    INFO(enum_name(kind) << ": " << c.dispatched << " dispatched, " << c.kernels << " computing (" << c.forward_kernels
                         << " forward, " << c.backward_kernels << " backward; the cell " << c.cell_kernels
                         << "), on CUDA " << c.cuda_kernels << "\n" << names.str());
    // The count is per step and whole: what is done once per batch cancels out.
    CHECK(c.forward_kernels > 0);
    CHECK(c.backward_kernels > 0);
    CHECK(c.forward_kernels == std::round(c.forward_kernels));
    CHECK(c.backward_kernels == std::round(c.backward_kernels));
    CHECK(c.dispatched >= c.kernels);
    // The cell was found (its forward scope and its backward node) and is part of the count.
    CHECK(c.cell_kernels >= 4);
    CHECK(c.cell_kernels < c.kernels);
    const double before = kind == AttentionKind::hard ? kOpsPerStepBeforeHard : kOpsPerStepBefore;
    CHECK(c.kernels < before);             // on the CPU without the fused kernels
    CHECK(c.cuda_kernels <= before / 2);   // on CUDA, with ATen's fused cell
  }
}

TEST_CASE("the operation count sees a change of the step: more work per step is more operations", "[bench][ops]") {
  // Soft attention with the doubly stochastic term keeps alpha_t in the graph: its backward adds
  // at least the gradient accumulation of alpha_t at every step.
  DecoderOptions o = coco_scale_decoder(AttentionKind::soft);
  o.vocab_size = 60;
  o.feature_dim = 24;
  o.regions = 9;
  o.embed_dim = o.attention_dim = o.hidden_dim = 16;
  o.alpha_c = 0;
  const StepOpCount without = count_step_ops(o, 4);
  o.alpha_c = 1;
  const StepOpCount with = count_step_ops(o, 4);
  CHECK(with.backward_kernels > without.backward_kernels);
  CHECK(with.forward_kernels == without.forward_kernels);
}
