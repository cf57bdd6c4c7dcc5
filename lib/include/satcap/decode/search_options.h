// How captions are searched for: one options struct for every place that decodes (`satcap caption`,
// `satcap eval`, validation during training, the benchmark). Its defaults are the only ones:
//   beam_size 3       (what `satcap caption` and `satcap eval` always used; the search's cost
//                      grows about linearly with it),
//   max_length 50     (the longest caption the most used PyTorch tutorial and the original code
//                      train on; the cap only stops runaway hypotheses, so it must not cut a real
//                      caption short: COCO has reference captions of more than 20 words),
//   length_penalty 0  (rank by total log-probability, as the paper and the tutorial do),
//   alternatives 1, hard_decode expected (the original code's default at test time).
// Training validates with greedy search (TrainOptions::validation) for speed: that is set there, by
// name, not by a second default here. No torch here.
#pragma once

#include <string>
#include <tuple>

#include "satcap/model/decoder_options.h"
#include "satcap/runtime/option_table.h"

namespace satcap {

struct SearchOptions {
  // Beam width K (1 = greedy).
  int beam_size = 3;
  // Maximum decoding steps per caption (words plus <end>): a caption has at most max_length words.
  int max_length = 50;
  // 0 = rank by the sum of log-probabilities. alpha > 0 = GNMT length penalty (Wu et al. 2016):
  // score = log p / ((5 + len) / 6)^alpha, len = generated tokens including <end>; alpha = 1 is
  // close to per-token normalisation.
  double length_penalty = 0;
  // Hypotheses returned per image, best first (1..beam_size).
  int alternatives = 1;
  // Hard-attention decoders: how z_t is formed (ignored by soft attention).
  HardDecode hard_decode = HardDecode::expected;

  // Throws UsageError naming the bad field: as a search option ("search option beam_size must be at
  // least 1 (got 0)"), or by its flag when `flag_prefix` is given ("--": "--beam must be ...";
  // "--val-", training's validation: "--val-beam must be ...").
  void validate(const std::string& flag_prefix = "") const;

  static constexpr auto fields() {
    using O = SearchOptions;
    return std::make_tuple(
        option("beam_size", &O::beam_size, "Beam width (1 = greedy search)", "--beam"),
        option("max_length", &O::max_length, "Longest caption in words", "--max-len"),
        option("length_penalty", &O::length_penalty,
               "GNMT length penalty alpha: score = log p / ((5 + len) / 6)^alpha (0 = total log-probability)"),
        option("alternatives", &O::alternatives, "Captions listed per image, best first (1..--beam)"),
        option("hard_decode", &O::hard_decode,
               "Hard-attention models: context while decoding: expected (soft context, as the original code), "
               "sample (s_t ~ alpha_t) or argmax"));
  }
};

}  // namespace satcap
