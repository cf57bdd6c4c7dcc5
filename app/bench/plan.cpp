// What a benchmark run measures (bench.h, measure.h): the options checked, the sizes of each mode
// (full, quick, smoke) with the options' overrides, the parts to run, and the COCO-scale model.
#include <algorithm>

#include "bench/measure.h"
#include "satcap/runtime/error.h"

namespace satcap {

namespace {
const std::vector<std::string> kParts = {"sgemm", "train", "python", "beam", "prepare", "growth", "ops", "dist"};
}

void BenchOptions::validate() const {
  if (quick && smoke) throw UsageError("--quick and --smoke: choose one");
  for (const auto& p : parts) {
    if (std::find(kParts.begin(), kParts.end(), p) == kParts.end()) {
      throw UsageError("--only '" + p + "': expected one of sgemm, train, python, beam, prepare, growth, ops, dist");
    }
  }
  if (python.empty()) throw UsageError("--python must name an interpreter");
  for (auto b : batches) {
    if (b < 1) throw UsageError("--batches: every batch size must be at least 1 (got " + std::to_string(b) + ")");
  }
  for (auto n : growth_sizes) {
    if (n < 10) throw UsageError("--growth-sizes: every size must be at least 10 images (got " + std::to_string(n) + ")");
  }
}

DecoderOptions coco_scale_decoder(AttentionKind attention) {
  DecoderOptions o;
  o.vocab_size = 10000;
  o.feature_dim = 2048;
  o.regions = 196;
  o.attention = attention;
  o.alpha_c = 1.0;  // the paper's COCO setting, as train_common.py
  o.semi_sampling_p = 0.0;
  return o;
}

namespace bench {
namespace {

// The mode's sizes.
Plan mode_plan(const BenchOptions& o) {
  Plan p;
  p.mode = o.smoke ? "smoke" : o.quick ? "quick" : "full";
  const int64_t B = 64, n = p.shape.regions, D = p.shape.feature_dim;
  if (o.smoke) {
    p.shape.regions = 16;
    p.shape.feature_dim = 64;
    p.shape.embed_dim = p.shape.attention_dim = p.shape.hidden_dim = 32;
    p.shape.vocab_size = 200;
    p.train_batches = {32, 64};  // tiny model, the full run's batch sizes (so the same report keys)
    p.python_batches = {64};
    p.train_warmup = p.python_warmup = 1;
    p.train_steps = p.python_steps = 1;
    p.sgemm_seconds = 0.02;
    p.sgemm_shapes = {{256, 256, 256}};
    p.beam_images = p.python_beam_images = 4;
    p.beams = {5};
    p.beam_max_len = 5;
    p.prepare_images = 8;
    p.prepare_batch = 4;
    p.growth_sizes.clear();
    return p;
  }
  p.train_batches = {32, 64};
  p.sgemm_shapes = {{1024, 1024, 1024}, {2048, 2048, 2048}, {B * n, D, 512}, {B, 512 + D + 512, 4 * 512},
                    {B * 12, 512, 10000}};
  if (o.quick) {
    p.python_batches = {64};
    p.train_warmup = 1;
    p.train_steps = 2;
    p.python_warmup = 1;
    p.python_steps = 1;
    p.sgemm_seconds = 0.3;
    p.beam_images = 50;
    p.python_beam_images = 10;
    p.prepare_images = 64;
    p.growth_sizes.clear();
  } else {
    p.python_batches = {32, 64};
    p.sgemm_shapes.insert(p.sgemm_shapes.begin(), {{512, 512, 512}, {1536, 1536, 1536}});
    p.sgemm_shapes.push_back({B, 512, 10000});
  }
  return p;
}

bool wants(const BenchOptions& o, const std::string& part, bool default_on) {
  if (o.parts.empty()) return default_on;
  return std::find(o.parts.begin(), o.parts.end(), part) != o.parts.end();
}

}  // namespace

Plan make_plan(const BenchOptions& o) {
  Plan p = mode_plan(o);
  if (!o.growth_sizes.empty()) p.growth_sizes = o.growth_sizes;
  if (!o.batches.empty()) {
    p.train_batches = o.batches;
    p.python_batches = {o.batches.back()};
  }
  p.sgemm = wants(o, "sgemm", true);
  p.train = wants(o, "train", true);
  p.python = wants(o, "python", true);
  p.beam = wants(o, "beam", true);
  p.prepare = wants(o, "prepare", true);
  p.ops = wants(o, "ops", true);
  p.growth = wants(o, "growth", p.mode == "full") && !p.growth_sizes.empty();
  p.dist = wants(o, "dist", false);
  return p;
}

}  // namespace bench
}  // namespace satcap
