// The training step (measure.h): the decoder's forward, loss, backward and Adam as `satcap train`
// runs them, on COCO-like caption lengths, timed and counted in FLOPs; the same step in Python as
// the tutorial writes it (train_common.py) and with the encoder projection hoisted
// (train_hoisted.py); satcap timed again after them; and the ratios.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/profiler.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <functional>
#include <iomanip>
#include <memory>

#include "bench/measure.h"
#include "satcap/model/decoder.h"
#include "satcap/ops/adam_step.h"
#include "satcap/runtime/loss_scaler.h"
#include "satcap/train/trainer.h"

namespace satcap {

std::vector<int64_t> bench_caption_lengths(int64_t batch_index, int64_t batch_size) {
  // Keep in step with tools/bench/benchutil.py (caption_lengths).
  static const int kWeights[] = {100, 220, 200, 150, 100, 70, 50, 35, 25, 17, 12, 8, 6, 4, 3};  // 8..22 words
  uint64_t state = static_cast<uint64_t>(batch_index) * 0x9E3779B97F4A7C15ULL + 12345ULL;
  std::vector<int64_t> lengths;
  lengths.reserve(static_cast<size_t>(batch_size));
  for (int64_t i = 0; i < batch_size; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    int u = static_cast<int>((state >> 33) % 1000);
    int acc = 0;
    for (int k = 0; k < 15; ++k) {
      acc += kWeights[k];
      if (u < acc) {
        lengths.push_back(8 + k);
        break;
      }
    }
  }
  return lengths;
}

namespace bench {

namespace {

struct Batch {
  at::Tensor captions, lengths;  // [B, T] int64, [B] int64
  std::vector<int64_t> words;
  int64_t tokens = 0;  // predicted tokens: words + <end>
};

Batch make_batch(int64_t index, int64_t batch, int64_t vocab, const c10::Device& device) {
  Batch b;
  b.words = bench_caption_lengths(index, batch);
  // Longest first, as satcap train's batches come (the Python scripts sort their own).
  std::stable_sort(b.words.begin(), b.words.end(), std::greater<int64_t>());
  int64_t longest = *std::max_element(b.words.begin(), b.words.end());
  at::Tensor caps = at::zeros({batch, longest + 2}, at::kLong);
  at::Tensor lengths = at::empty({batch}, at::kLong);
  auto c = caps.accessor<int64_t, 2>();
  auto len = lengths.accessor<int64_t, 1>();
  at::Tensor ids = at::randint(4, vocab, {batch, longest}, at::kLong);
  auto r = ids.accessor<int64_t, 2>();
  for (int64_t i = 0; i < batch; ++i) {
    const int64_t w = b.words[static_cast<size_t>(i)];
    c[i][0] = 1;  // <start>
    for (int64_t j = 0; j < w; ++j) c[i][j + 1] = r[i][j];
    c[i][w + 1] = 2;  // <end>
    len[i] = w + 2;
    b.tokens += w + 1;
  }
  b.captions = caps.to(device);
  b.lengths = lengths.to(device);
  return b;
}

// satcap's step at `batch`, plan.train_steps timed after plan.train_warmup. With a `trace` path,
// LibTorch's profiler records the timed steps and writes a Chrome trace there.
json measure_training(const BenchRun& run, const DecoderOptions& shape, int64_t batch, const std::string& trace) {
  const Plan& plan = run.plan;
  const c10::Device& device = run.device;
  at::manual_seed(1);
  Decoder decoder(shape);
  decoder->to(device);
  decoder->train();
  torch::optim::Adam adam(decoder->parameters(), torch::optim::AdamOptions(4e-4));
  int64_t parameters = 0;
  for (const auto& p : decoder->parameters()) parameters += p.numel();
  at::Tensor features = at::rand({batch, shape.regions, shape.feature_dim}, at::TensorOptions().device(device));

  LossScaler scaler(run.precision == Precision::fp16);
  const auto params = decoder->parameters();
  auto train_step = [&](const Batch& b) {  // as satcap train runs it (lib/src/train/trainer.cpp)
    LossTerms loss = training_loss(decoder, features, b.captions, b.lengths, run.precision, device);
    clear_grads(adam);
    scaler.scaled(loss.total).backward();
    if (scaler.unscale_and_update(params)) adam_step(adam);
    return loss.nll.item<double>();
  };
  for (int i = 0; i < plan.train_warmup; ++i) train_step(make_batch(i, batch, shape.vocab_size, device));
  std::vector<Batch> batches;
  std::vector<int64_t> words;
  int64_t tokens = 0;
  for (int i = plan.train_warmup; i < plan.train_warmup + plan.train_steps; ++i) {
    batches.push_back(make_batch(i, batch, shape.vocab_size, device));
    words.insert(words.end(), batches.back().words.begin(), batches.back().words.end());
    tokens += batches.back().tokens;
  }
  double nll = 0;
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
  if (!trace.empty()) profile = std::make_unique<torch::autograd::profiler::RecordProfile>(trace);
  const Timing t = timed(device, [&] {
    for (const auto& b : batches) nll = train_step(b);
  });
  profile.reset();  // writes the trace (outside the timing it disturbs anyway)
  auto terms = training_flops(shape, words, parameters);
  // Adam runs once per step; the count above holds it once for all the captions.
  double flops = total_flops(terms) + 12.0 * static_cast<double>(parameters) * (plan.train_steps - 1);
  double gflops = flops / t.seconds / 1e9;
  json term_list = json::array();
  for (const auto& term : terms) {
    term_list.push_back({{"term", term.name}, {"forward_gflop", term.forward / 1e9}, {"backward_factor", term.backward_factor}});
  }
  return {{"batch", batch},
          {"steps", plan.train_steps},
          {"words", tokens},
          {"seconds", t.seconds},
          {"cpu_seconds", t.cpu_seconds},
          {"words_per_s", tokens / t.seconds},
          {"words_per_cpu_s", tokens / t.cpu_seconds},
          {"seconds_per_step", t.seconds / plan.train_steps},
          {"gflop", flops / 1e9},
          {"gflops", gflops},
          {"parameters", parameters},
          {"last_nll", nll},
          {"precision", precision_name(run.precision)},
          {"skipped_steps", scaler.skipped()},
          {"flop_terms", term_list}};
}

// Two measurements of the same step as one: words, seconds and FLOPs summed, rates recomputed.
// The bench times satcap before and after the Python runs it is compared with, so that a shared
// machine's drift over those minutes falls on both sides of the ratio.
json combine_training(const json& a, const json& b) {
  json m = a;
  const double words = a["words"].get<double>() + b["words"].get<double>();
  const double seconds = a["seconds"].get<double>() + b["seconds"].get<double>();
  const double cpu = a["cpu_seconds"].get<double>() + b["cpu_seconds"].get<double>();
  const double gflop = a["gflop"].get<double>() + b["gflop"].get<double>();
  m["steps"] = a["steps"].get<int64_t>() + b["steps"].get<int64_t>();
  m["words"] = words;
  m["seconds"] = seconds;
  m["cpu_seconds"] = cpu;
  m["words_per_s"] = words / seconds;
  m["words_per_cpu_s"] = words / cpu;
  m["seconds_per_step"] = seconds / m["steps"].get<double>();
  m["gflop"] = gflop;
  m["gflops"] = gflop / seconds;
  m["last_nll"] = b["last_nll"];
  m["parts_words_per_s"] = {a["words_per_s"], b["words_per_s"]};  // before and after the Python runs
  return m;
}

// The step in Python: `which` is "common" (train_common.py) or "hoisted" (train_hoisted.py).
json python_training(const BenchRun& run, const std::string& which, const DecoderOptions& shape, int64_t batch) {
  const Plan& plan = run.plan;
  return run_script(run, "train_" + which + ".py",
                    {"--batch", std::to_string(batch), "--warmup", std::to_string(plan.python_warmup), "--steps",
                     std::to_string(plan.python_steps), "--attention", enum_name(shape.attention), "--precision",
                     precision_name(run.precision)},
                    shape);
}

const char* const kPythonSteps[] = {"common", "hoisted"};

}  // namespace

void bench_training(const BenchRun& run, AttentionKind kind, json& report) {
  const Plan& plan = run.plan;
  const std::string att = enum_name(kind);
  const std::string sfx = kind == AttentionKind::hard ? "_hard" : "";
  DecoderOptions shape = plan.shape;
  shape.attention = kind;
  json section;
  auto record = [&](int64_t b, const json& m) {
    const std::string bs = std::to_string(b);
    report["train_words_per_s_b" + bs + sfx] = m["words_per_s"];
    report["train_gflops_b" + bs + sfx] = m["gflops"];
    section["satcap_b" + bs] = m;
  };
  if (plan.train) {
    for (int64_t b : plan.train_batches) {
      run.log("training step, ", att, " attention, batch ", b, " ...");
      json m = measure_training(run, shape, b, run.options.trace);
      run.log("  satcap: ", std::fixed, std::setprecision(0), m["words_per_s"].get<double>(), " words/s, ",
              std::setprecision(1), m["gflops"].get<double>(), " GFLOP/s");
      record(b, m);
    }
  }
  if (plan.python && run.python.ok()) {
    for (int64_t b : plan.python_batches) {
      const std::string bs = std::to_string(b);
      for (const std::string which : kPythonSteps) {
        run.log("training step in Python (train_", which, ".py), ", att, " attention, batch ", b, " ...");
        json m = python_training(run, which, shape, b);
        if (script_succeeded(m, report, run.log))
          run.log("  Python: ", std::fixed, std::setprecision(0), m["words_per_s"].get<double>(), " words/s");
        section[which + "_b" + bs] = m;
        report["python_" + which + "_words_per_s_b" + bs + sfx] = field_or_null(m, "words_per_s");
      }
      if (plan.train && section.contains("satcap_b" + bs)) {  // satcap again, after the Python runs
        run.log("training step, ", att, " attention, batch ", b, ", again after Python ...");
        json again = measure_training(run, shape, b, "");
        run.log("  satcap: ", std::fixed, std::setprecision(0), again["words_per_s"].get<double>(), " words/s");
        record(b, combine_training(section["satcap_b" + bs], again));
      }
    }
  }
  // Ratios at the largest batch both sides ran, and per batch.
  for (int64_t b : plan.python_batches) {
    const std::string bs = std::to_string(b);
    const double mine = number_or(report, "train_words_per_s_b" + bs + sfx);
    for (const std::string which : kPythonSteps) {
      json r = ratio(mine, number_or(report, "python_" + which + "_words_per_s_b" + bs + sfx));
      report["train_vs_" + which + "_b" + bs + sfx] = r;
      if (b == plan.python_batches.back()) report["train_vs_" + which + sfx] = r;
    }
  }
  report["train" + sfx] = section;
}

void add_fractions_of_peak(json& report, double peak) {
  for (const std::string sfx : {"", "_hard"}) {
    if (!report.contains("train" + sfx)) continue;
    const std::string mine = "satcap_b";  // satcap's measurements, not Python's
    for (auto& [key, m] : report["train" + sfx].items()) {
      if (key.rfind(mine, 0) != 0) continue;
      m["fraction_of_peak"] = m["gflops"].get<double>() / peak;
      report["train_fraction_of_peak_b" + key.substr(mine.size()) + sfx] = m["fraction_of_peak"];
    }
  }
}

}  // namespace bench
}  // namespace satcap
