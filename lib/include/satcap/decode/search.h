// Caption search over a Decoder's step API: greedy and beam search, both batched across images and
// beams (one Decoder::step call per time step for every image and hypothesis).
//
// Scores are sums of log-probabilities. Ties are broken deterministically: candidates are ranked by
// a stable sort, so among equal scores the lower beam index, then the lower token id, comes first
// (greedy picks the lowest token id among equal maxima), and beam_size 1 gives exactly greedy's
// tokens and score. Every hypothesis stops at <end> or after max_length steps; when an image has
// fewer than `alternatives` complete hypotheses, the best cut-off ones fill the list (marked
// finished = false) instead of returning nothing. A hypothesis with no finite continuation (NaN
// log-probabilities from a diverged model) stops there, unfinished: every image gets at least one.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "satcap/decode/search_options.h"
#include "satcap/model/decoder.h"

namespace satcap {

// The vocabulary ids the search needs.
struct SearchTokens {
  int64_t start = 1;  // <start>, fed at the first step (Vocabulary::start_id)
  int64_t end = 2;    // <end>, finishes a hypothesis (Vocabulary::end_id)
  // Ids never emitted: by default <pad> and <start> (Vocabulary::pad_id, start_id), which are never
  // a training target, and which Vocabulary::decode would drop, leaving alpha rows without their
  // word. Add <unk> if wanted. Must not contain `end`.
  std::vector<int64_t> banned{0, 1};
};

struct Hypothesis {
  std::vector<int64_t> tokens;  // the words, without <start> and <end>
  double log_prob = 0;          // sum of the step log-probabilities (of the words, and of <end> if finished)
  double score = 0;             // the ranking score: log_prob, or log_prob / length penalty
  at::Tensor alphas;            // [tokens.size(), n] float32 on the CPU: alpha_t of each word (rows sum to 1)
  bool finished = true;         // false: cut at max_length without <end>
};

// features [B, n, D] on the decoder's device -> per image, up to `alternatives` hypotheses, best
// first. Runs without autograd and in eval mode (the decoder's mode is restored afterwards).
// Throws UsageError for bad options or token ids, ModelError for features the decoder cannot take.
std::vector<std::vector<Hypothesis>> greedy_search(Decoder decoder, const at::Tensor& features,
                                                   const SearchTokens& tokens, const SearchOptions& options);
std::vector<std::vector<Hypothesis>> beam_search(Decoder decoder, const at::Tensor& features,
                                                 const SearchTokens& tokens, const SearchOptions& options);
// greedy_search when beam_size is 1, beam_search otherwise.
std::vector<std::vector<Hypothesis>> search(Decoder decoder, const at::Tensor& features,
                                            const SearchTokens& tokens, const SearchOptions& options);

}  // namespace satcap
