// The Show, Attend and Tell decoder (Xu et al. 2015, section 3.1): an LSTM that reads region
// features a_1..a_n, attends to them with soft (deterministic) or hard (stochastic) attention and
// emits one word per step. It offers two faces:
//   - training: a teacher-forced forward over a padded caption batch and its loss (NLL, the doubly
//     stochastic regulariser, and for hard attention the REINFORCE surrogate and entropy bonus);
//   - decoding: a CTranslate2-style seam for search (lib/include/satcap/decode/search.h):
//     init_state(features) -> DecoderState, step(prev_ids, state) -> {log_probs, alpha},
//     DecoderState::reorder(beam indices).
// Everything is device-generic (tensors follow the device and dtype of the features); float32 is
// what the rest of satcap uses.
//
// Where the paper's equations are computed. The readable reference path (lib/src/model/decoder.cpp)
// computes them one step at a time; the training forward (lib/src/model/decoder_training.cpp) does
// the same work packed over a batch's valid steps, with fused operations (satcap/ops), and the
// tests check that the two agree.
//   eq. / section            what                                          reference        training
//   3.1.2 (init)             h_0, c_0 = f_init,h/c(mean_i a_i) (tanh|linear) init_state       init_state
//   (4)                      e_ti = w^T act(W_a a_i + U_a h_{t-1} + b)       attend           ScoreSequence
//   (5)                      alpha_t = softmax_i(e_ti)                       normalise        normalise
//   (6), (13) soft           z_t = sum_i alpha_ti a_i                        expected_context expected_context
//   4.1 hard                 s_t ~ Multinomial(alpha_t), z_t = a_{s_t}       step (sample)    teacher_forced
//   4.2.1 gate               z_t <- sigmoid(f_beta(h_{t-1})) z_t             gate             gated
//   (1)-(3) LSTM             i, f, o, g, c_t, h_t from [E y_{t-1}; z_t], h_{t-1}  step (LSTMCell) lstm_cell
//   (7) deep output          p(y_t) ∝ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t)) output_logits    output_logits
//   NLL                      -log p(y_t | y_<t, a), summed per caption       step (log_softmax) loss (token_nll)
//   (14)                     lambda sum_i (1 - sum_t alpha_ti)^2             loss (ds_reg)
//   4.1 REINFORCE            NLL + lambda_r (NLL_n - b).detach() log p(s)    loss (reinforce)
//                            - lambda_e H(alpha_t), b a moving average       loss (entropy, baseline)
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <string>
#include <vector>

#include "satcap/model/decoder_options.h"

namespace satcap {

// What init_state builds and step advances. Rows are hypotheses: R = B * beam rows, the beams of
// image b in rows [b * beam, (b + 1) * beam). The per-image tensors (features, projected) are kept
// once per image, not once per row: attention broadcasts over the beam.
struct DecoderState {
  at::Tensor h;          // [R, H]  h_{t-1}
  at::Tensor c;          // [R, H]  c_{t-1}
  at::Tensor features;   // [B, n, D]  a_i
  at::Tensor projected;  // [B, n, A]  W_a a_i + b, computed once per image
  int64_t beam = 1;      // rows per image

  int64_t rows() const { return h.size(0); }
  int64_t images() const { return features.size(0); }
  // Rows become `beam` copies of each current row (beam must be 1 before). [B] -> [B * beam]
  void expand_beams(int64_t beam);
  // Row r takes the state of row indices[r] ([R] int64, same device). Every index must stay within
  // its image's group of rows (a beam search reorder); the per-image tensors are not touched.
  void reorder(const at::Tensor& indices);
  // Keeps the images `image_indices` ([B'] int64) with all their rows (dropping finished images).
  void select_images(const at::Tensor& image_indices);
};

// Data-parallel training (satcap/train, satcap/dist): one process's part of a global minibatch. The
// global batch's rows are sorted by decreasing length, the order the training forward packs them
// in, and each process takes a contiguous run of them. With the part's place in the whole, the
// forward and the loss compute what one process computes on the whole batch, whatever the split:
// dropout masks keyed by each value's position in the global batch's packing, the hard-attention
// samples of every global row drawn on every process (each keeps its rows'), the loss divided by
// the global number of tokens.
struct BatchSlice {
  int64_t row_offset = 0;             // the part's first row in the global batch
  std::vector<int64_t> global_steps;  // valid steps (length - 1) of every global row, non-increasing

  int64_t tokens() const;             // N of the global batch: the loss's divisor
  int64_t captions() const;           // global rows with a valid step: the baseline's mean is over them
  int64_t active(int64_t t) const;    // global rows still going at step t
  // UsageError unless the rows fit: row_offset + B global rows, non-increasing steps, and `steps`
  // (the part's own rows' valid steps) those of global rows row_offset ...
  void check(const std::vector<int64_t>& steps) const;
};

// One decoding step's result.
struct StepOutput {
  at::Tensor log_probs;  // [R, V]  log p(y_t | y_<t, a)
  at::Tensor alpha;      // [R, n]  alpha_t (rows sum to 1)
};

// The teacher-forced forward over a padded batch; S = T - 1 steps. Only valid steps are computed
// (caption b's first length_b - 1); past a caption's end (mask 0) the [B, S, ...] fields hold
// harmless constants: logits 0 (uniform), alpha 1/n, s_t 0, log alpha_t[s_t] = -log n, H = log n.
struct DecoderOutput {
  // The unnormalised scores of y_1..y_S of the N valid positions only, what loss() reads, and
  // where each sits: b * S + t. (An output made by hand may leave valid_index undefined: loss()
  // then takes valid_logits to be the mask's valid positions in row-major order.)
  at::Tensor valid_logits;      // [N, V]
  at::Tensor valid_index;       // [N] int64
  at::Tensor alphas;            // [B, S, n]  alpha_t
  at::Tensor targets;           // [B, S] int64  captions[:, 1:]
  at::Tensor mask;              // [B, S] (features' dtype) 1 on valid steps (t < length - 1)
  // Hard attention with sampled locations only (undefined otherwise):
  at::Tensor samples;           // [B, S] int64  s_t
  at::Tensor sample_log_probs;  // [B, S]  log alpha_t[s_t] (differentiable)
  at::Tensor entropies;         // [B, S]  H(alpha_t) = -sum_i alpha_ti log alpha_ti (hard attention)
  bool sampled = false;         // true when z_t = a_{s_t} (REINFORCE applies)
  // A part of a global batch (BatchSlice): the global batch's tokens and captions with a valid
  // step; -1 otherwise. loss() then divides by the global token count and leaves the baseline's
  // update to the caller, who knows the global NLL (update_baseline).
  int64_t global_tokens = -1;
  int64_t global_captions = -1;

  // [B, S, V]: valid_logits in the padded layout, 0 past each caption's end. Built on each call;
  // training never builds it (a [B, S, V] fill and scatter per step, 56 MB at the paper's scale).
  at::Tensor padded_logits() const;
};

// The training loss and its parts, all scalars (0-dim tensors) for logging except caption_nll.
// Every term is a sum over the batch's captions divided by N, the number of valid tokens in the
// batch: nll is the mean token NLL, and the relative weights of the terms are those of the original
// code's per-caption objective (which is N / B times this loss).
struct LossTerms {
  // nll + ds_reg + reinforce - entropy: what to backpropagate. With sampled hard attention it is a
  // surrogate whose value means little (it can be negative); log nll and ds_reg instead.
  at::Tensor total;
  at::Tensor nll;        // sum of masked token NLL / N
  at::Tensor ds_reg;     // lambda * sum_n sum_i (1 - sum_t alpha_nti)^2 / N  (valid steps only)
  at::Tensor reinforce;  // lambda_r * sum_n (NLL_n - b) * sum_t log alpha_t[s_t] / N  (0 unless sampled)
  at::Tensor entropy;    // lambda_e * sum_n sum_t H(alpha_nt) / N  (0 unless sampled)
  at::Tensor caption_nll;  // [B] NLL_n = sum of caption n's token NLL (detached)
  at::Tensor caption_nll_sum;  // sum_n NLL_n over the captions with a valid step (detached): the baseline's input
  at::Tensor baseline;     // b used for this minibatch, before its update (detached)
  at::Tensor tokens;       // N
};

struct DecoderImpl : torch::nn::Module {
  explicit DecoderImpl(const DecoderOptions& options);

  // Teacher-forced forward (training and validation NLL).
  //   features [B, n, D], captions [B, T] int64 (<start> w_1 ... <end> <pad>...),
  //   lengths [B] int64 (tokens including <start> and <end>; any device).
  // Hard attention: in training mode each call draws semi-sampling with semi_sampling_p (expected
  // context for the whole minibatch) and otherwise samples s_t; in eval mode it uses the expected
  // context, like decoding. The overload with a HardDecode fixes the mode.
  DecoderOutput forward(const at::Tensor& features, const at::Tensor& captions, const at::Tensor& lengths);
  DecoderOutput forward(const at::Tensor& features, const at::Tensor& captions, const at::Tensor& lengths,
                        HardDecode mode);
  // The training forward of a part of a global batch (data-parallel training; see BatchSlice): the
  // rows must be sorted by decreasing length. With `slice` null, the forward above.
  DecoderOutput forward(const at::Tensor& features, const at::Tensor& captions, const at::Tensor& lengths,
                        const BatchSlice* slice);
  // Hard attention at given locations ([B, T-1] int64 s_t): for scoring and for enumerating E_s[.].
  DecoderOutput forward_at(const at::Tensor& features, const at::Tensor& captions, const at::Tensor& lengths,
                           const at::Tensor& locations);

  // The loss of a teacher-forced output (see LossTerms). For hard attention in training mode it
  // updates the baseline once: b <- decay * b + (1 - decay) * mean_n NLL_n (after using the old b),
  // unless the output is a part of a global batch.
  LossTerms loss(const DecoderOutput& out);
  // b <- decay * b + (1 - decay) * nll_sum / captions (0-dim tensors): the baseline's update, from
  // the global batch's sums in data-parallel training.
  void update_baseline(const at::Tensor& nll_sum, const at::Tensor& captions);

  // Decoding: h_0, c_0 and the projected features for features [B, n, D]; beam 1.
  DecoderState init_state(const at::Tensor& features);
  // One step for every row: prev_ids [R] int64 -> log-probs [R, V] and alpha [R, n]; advances state.
  StepOutput step(const at::Tensor& prev_ids, DecoderState& state, HardDecode mode = HardDecode::expected);

  const DecoderOptions& options() const { return options_; }
  // The REINFORCE baseline b (a registered buffer, so it is saved with the weights). 0-dim.
  at::Tensor baseline() const { return baseline_; }

  // Submodules, registered under these names (the state-dict keys).
  torch::nn::Embedding embed{nullptr};        // "embed"        E: V -> m
  torch::nn::Linear att_features{nullptr};    // "att_features" W_a (with b): D -> A
  torch::nn::Linear att_hidden{nullptr};      // "att_hidden"   U_a: H -> A (no bias)
  torch::nn::Linear att_score{nullptr};       // "att_score"    w: A -> 1
  torch::nn::Linear f_beta{nullptr};          // "f_beta"       H -> 1 or D (absent for beta none)
  torch::nn::LSTMCell lstm{nullptr};          // "lstm"         input [E y_{t-1}; z_t]: m + D -> H
  torch::nn::Linear init_h{nullptr};          // "init_h"       f_init,h: D -> H (absent for init_state zeros)
  torch::nn::Linear init_c{nullptr};          // "init_c"       f_init,c: D -> H
  torch::nn::Linear out_hidden{nullptr};      // "out_hidden"   L_h: H -> m (deep output only)
  torch::nn::Linear out_context{nullptr};     // "out_context"  L_z: D -> m (deep output only)
  torch::nn::Linear out_vocab{nullptr};       // "out_vocab"    L_o: m -> V (deep), H -> V (otherwise)

 private:
  // Attention over the state's features for its current h: alpha [R, n] and the unnormalised
  // log-alpha (log_softmax of e) [R, n].
  std::pair<at::Tensor, at::Tensor> attend(const DecoderState& state);
  // Scores e [R, n] -> {alpha, log alpha}, both [R, n].
  static std::pair<at::Tensor, at::Tensor> normalise(const at::Tensor& e);
  // The context sum_i alpha_ti a_i ([R, D]) and a_{s} for locations s [R].
  at::Tensor expected_context(const DecoderState& state, const at::Tensor& alpha) const;
  at::Tensor located_context(const DecoderState& state, const at::Tensor& locations) const;
  at::Tensor gate(const at::Tensor& h, const at::Tensor& context);  // beta_t * context
  static at::Tensor gated(const at::Tensor& beta_logits, const at::Tensor& context);  // the same, given f_beta(h)
  // Output layer over any leading shape: emb [..., m], h [..., H], z [..., D] -> logits [..., V].
  // `row_keys` ([N] int64, packed [N, .] inputs only): each row's position in the global batch's
  // packing, for its dropout mask (satcap/ops/dropout.h).
  at::Tensor output_logits(const at::Tensor& emb, const at::Tensor& h, const at::Tensor& z,
                           const at::Tensor& row_keys = {});
  void check_features(const at::Tensor& features, const char* where) const;
  enum class Context { expected, sample, argmax, given };
  DecoderOutput teacher_forced(const at::Tensor& features, const at::Tensor& captions, const at::Tensor& lengths,
                               Context context, const at::Tensor& locations, const BatchSlice* slice = nullptr);
  // Hard attention's s_t ~ Multinomial(alpha_t) for the B_t rows of alpha [B_t, n] (detached), which
  // are rows offset .. offset + B_t of the `rows` rows active at this step (the global batch's in
  // data-parallel training): at::multinomial's own draw (s = argmax alpha / q, q ~ Exp(1) on the
  // CPU generator) made for all `rows`, so that a row's sample does not depend on the split.
  static at::Tensor sample_locations(const at::Tensor& alpha, int64_t rows, int64_t offset);

  DecoderOptions options_;
  at::Tensor baseline_;  // "reinforce_baseline", 0-dim
};
TORCH_MODULE(Decoder);

}  // namespace satcap
