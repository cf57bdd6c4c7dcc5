// Beam search (measure.h): satcap's batched search at each beam width against a Python beam search
// that decodes one image at a time (beam_per_image.py), and hard attention's expected-context
// decoding at beam 5.
#include <ATen/ATen.h>

#include <algorithm>
#include <iomanip>
#include <map>

#include "bench/measure.h"
#include "satcap/decode/search.h"
#include "satcap/model/decoder.h"

namespace satcap::bench {

namespace {

json measure_beam(const BenchRun& run, const DecoderOptions& shape, int64_t beam) {
  const Plan& plan = run.plan;
  at::manual_seed(2);
  Decoder decoder(shape);
  decoder->to(run.device);
  decoder->eval();
  at::Tensor features =
      at::rand({plan.beam_images, shape.regions, shape.feature_dim}, at::TensorOptions().device(run.device));
  SearchTokens tokens;
  tokens.banned = {0, 1};  // <pad>, <start>
  SearchOptions so;
  so.beam_size = static_cast<int>(beam);
  so.max_length = static_cast<int>(plan.beam_max_len);
  search(decoder, features.slice(0, 0, std::min<int64_t>(8, plan.beam_images)), tokens, so);  // warm-up
  std::vector<std::vector<Hypothesis>> result;
  const Timing t = timed(run.device, [&] { result = search(decoder, features, tokens, so); });
  double words = 0;
  for (const auto& hyps : result) words += hyps.empty() ? 0 : static_cast<double>(hyps.front().tokens.size());
  const double images = static_cast<double>(plan.beam_images);
  return {{"beam", beam},
          {"images", plan.beam_images},
          {"max_len", plan.beam_max_len},
          {"seconds", t.seconds},
          {"cpu_seconds", t.cpu_seconds},
          {"captions_per_s", images / t.seconds},
          {"captions_per_cpu_s", images / t.cpu_seconds},
          {"mean_words", words / images}};
}

}  // namespace

void bench_beam(const BenchRun& run, json& report) {
  const Plan& plan = run.plan;
  json section;
  std::map<int64_t, double> per_image;  // the Python search's captions/s by beam width
  auto python_rate = [&](int64_t k) { return per_image.count(k) ? per_image[k] : 0.0; };
  for (int64_t k : plan.beams) {
    const std::string beam = "beam" + std::to_string(k);
    run.log("beam search, beam ", k, ", ", plan.beam_images, " images ...");
    json m = measure_beam(run, plan.shape, k);
    run.log("  satcap: ", std::fixed, std::setprecision(1), m["captions_per_s"].get<double>(), " captions/s");
    section["satcap_" + beam] = m;
    report[beam + "_captions_per_s"] = m["captions_per_s"];
    if (run.python.ok()) {
      run.log("beam search in Python, one image at a time (beam_per_image.py), beam ", k, ", ", plan.python_beam_images,
              " images ...");
      json p = run_script(run, "beam_per_image.py",
                          {"--images", std::to_string(plan.python_beam_images), "--beam", std::to_string(k),
                           "--max-len", std::to_string(plan.beam_max_len)},
                          plan.shape);
      section["per_image_" + beam] = p;
      if (script_succeeded(p, report, run.log)) {
        run.log("  Python: ", std::fixed, std::setprecision(2), p["captions_per_s"].get<double>(), " captions/s");
        per_image[k] = p["captions_per_s"].get<double>();
      }
    }
    report[beam + "_per_image_captions_per_s"] = per_image.count(k) ? json(per_image[k]) : json(nullptr);
    report[beam + "_vs_per_image"] = ratio(m["captions_per_s"].get<double>(), python_rate(k));
  }
  // Hard attention decodes with the expected context (the original code's default): the same
  // work as soft attention, measured again at beam 5 against the same per-image Python number.
  if (std::find(plan.beams.begin(), plan.beams.end(), 5) != plan.beams.end()) {
    DecoderOptions shape = plan.shape;
    shape.attention = AttentionKind::hard;
    run.log("beam search, hard attention (expected context), beam 5 ...");
    json m = measure_beam(run, shape, 5);
    section["satcap_beam5_hard"] = m;
    report["beam5_captions_per_s_hard"] = m["captions_per_s"];
    report["beam5_vs_per_image_hard"] = ratio(m["captions_per_s"].get<double>(), python_rate(5));
  }
  section["model"] = plan.mode == "smoke" ? "smoke (tiny)" : "COCO scale: n 196, D 2048, m 512, A 512, H 512, V 10000";
  section["note"] = "random weights and features: no hypothesis ends early, every caption runs max_len steps on both sides";
  report["beam"] = section;
}

}  // namespace satcap::bench
