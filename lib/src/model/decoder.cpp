// The decoder's readable reference path, equation by equation: the module, the initial state,
// attention, the context, the gate, one decoding step and the loss (see the table in decoder.h).
// The fused training forward is decoder_training.cpp.
#include "satcap/model/decoder.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/utils.h>

#include <algorithm>
#include <functional>
#include <sstream>
#include <tuple>

#include "model/decoder_tensors.h"
#include "satcap/ops/attention_scores.h"
#include "satcap/ops/dropout.h"
#include "satcap/ops/token_nll.h"
#include "satcap/runtime/error.h"

namespace satcap {

using detail::padded;
using detail::shape_of;

// ---------------------------------------------------------------------------------------------
// DecoderOutput

at::Tensor DecoderOutput::padded_logits() const {
  const int64_t B = mask.size(0), S = mask.size(1);
  auto index = valid_index.defined() ? valid_index : mask.reshape({-1}).nonzero().view({-1});  // [N]
  return padded(valid_logits, index, B, S, 0.0);  // [B, S, V]
}

// ---------------------------------------------------------------------------------------------
// BatchSlice

int64_t BatchSlice::tokens() const {
  int64_t n = 0;
  for (int64_t s : global_steps) n += s;
  return n;
}

int64_t BatchSlice::captions() const {
  return static_cast<int64_t>(std::count_if(global_steps.begin(), global_steps.end(), [](int64_t s) { return s > 0; }));
}

int64_t BatchSlice::active(int64_t t) const {
  // Non-increasing steps: the rows going at step t are a prefix.
  auto end = std::partition_point(global_steps.begin(), global_steps.end(), [t](int64_t s) { return s > t; });
  return static_cast<int64_t>(end - global_steps.begin());
}

void BatchSlice::check(const std::vector<int64_t>& steps) const {
  const auto rows = static_cast<int64_t>(global_steps.size()), B = static_cast<int64_t>(steps.size());
  if (row_offset < 0 || row_offset + B > rows)
    throw UsageError("decoder forward: a batch part of " + std::to_string(B) + " rows at row " +
                     std::to_string(row_offset) + " does not fit a global batch of " + std::to_string(rows));
  if (!std::is_sorted(global_steps.begin(), global_steps.end(), std::greater<int64_t>()))
    throw UsageError("decoder forward: the global batch's rows are not sorted by decreasing length");
  for (int64_t b = 0; b < B; ++b)
    if (steps[static_cast<size_t>(b)] != global_steps[static_cast<size_t>(row_offset + b)])
      throw UsageError("decoder forward: row " + std::to_string(b) + " of the batch part has " +
                       std::to_string(steps[static_cast<size_t>(b)]) + " valid steps, global row " +
                       std::to_string(row_offset + b) + " has " +
                       std::to_string(global_steps[static_cast<size_t>(row_offset + b)]));
}

// ---------------------------------------------------------------------------------------------
// DecoderState

void DecoderState::expand_beams(int64_t k) {
  if (beam != 1) throw std::logic_error("DecoderState::expand_beams: state already has beams");
  h = h.repeat_interleave(k, 0);
  c = c.repeat_interleave(k, 0);
  beam = k;
}

void DecoderState::reorder(const at::Tensor& indices) {
  h = h.index_select(0, indices);
  c = c.index_select(0, indices);
}

void DecoderState::select_images(const at::Tensor& image_indices) {
  auto idx = image_indices.to(features.device(), at::kLong);
  features = features.index_select(0, idx);
  projected = projected.index_select(0, idx);
  // Rows of the kept images: image * beam + [0, beam).
  auto rows = (idx.unsqueeze(1) * beam + at::arange(beam, idx.options()).unsqueeze(0)).reshape({-1});
  h = h.index_select(0, rows);
  c = c.index_select(0, rows);
}

// ---------------------------------------------------------------------------------------------
// DecoderImpl

DecoderImpl::DecoderImpl(const DecoderOptions& options) : options_(options) {
  options_.validate();
  const auto& o = options_;
  embed = register_module("embed", torch::nn::Embedding(o.vocab_size, o.embed_dim));
  att_features = register_module("att_features", torch::nn::Linear(o.feature_dim, o.attention_dim));
  att_hidden = register_module(
      "att_hidden", torch::nn::Linear(torch::nn::LinearOptions(o.hidden_dim, o.attention_dim).bias(false)));
  // No bias: a constant added to every e_ti cancels in the softmax (it would get no gradient).
  att_score = register_module("att_score", torch::nn::Linear(torch::nn::LinearOptions(o.attention_dim, 1).bias(false)));
  if (o.beta != BetaKind::none)
    f_beta = register_module("f_beta",
                             torch::nn::Linear(o.hidden_dim, o.beta == BetaKind::scalar ? 1 : o.feature_dim));
  lstm = register_module("lstm", torch::nn::LSTMCell(o.embed_dim + o.feature_dim, o.hidden_dim));
  if (o.init_state != InitState::zeros) {
    init_h = register_module("init_h", torch::nn::Linear(o.feature_dim, o.hidden_dim));
    init_c = register_module("init_c", torch::nn::Linear(o.feature_dim, o.hidden_dim));
  }
  if (o.deep_output) {
    out_hidden = register_module("out_hidden", torch::nn::Linear(o.hidden_dim, o.embed_dim));
    out_context = register_module("out_context", torch::nn::Linear(o.feature_dim, o.embed_dim));
    out_vocab = register_module("out_vocab", torch::nn::Linear(o.embed_dim, o.vocab_size));
  } else {
    out_vocab = register_module("out_vocab", torch::nn::Linear(o.hidden_dim, o.vocab_size));
  }
  baseline_ = register_buffer("reinforce_baseline", at::zeros({}, at::kFloat));
  {
    torch::NoGradGuard no_grad;
    embed->weight.uniform_(-0.1, 0.1);
    out_vocab->weight.uniform_(-0.1, 0.1);
    out_vocab->bias.zero_();
  }
}

void DecoderImpl::check_features(const at::Tensor& features, const char* where) const {
  if (features.dim() != 3 || features.size(2) != options_.feature_dim ||
      (options_.regions > 0 && features.size(1) != options_.regions) || features.size(1) < 1) {
    std::ostringstream s;
    s << "decoder " << where << ": features have shape " << shape_of(features) << ", this decoder expects [B, "
      << (options_.regions > 0 ? std::to_string(options_.regions) : std::string("n")) << ", "
      << options_.feature_dim << "]";
    throw ModelError(s.str());
  }
}

DecoderState DecoderImpl::init_state(const at::Tensor& features) {
  check_features(features, "init_state");
  DecoderState st;
  st.features = features;                               // [B, n, D]
  st.projected = att_features->forward(features);       // [B, n, A]  W_a a_i + b, once per image
  if (options_.init_state != InitState::zeros) {
    // h_0 = f_init,h(mean_i a_i), c_0 = f_init,c(mean_i a_i) (section 3.1.2), through tanh as in the
    // original code, or linear as in the most used PyTorch tutorial.
    auto mean = features.mean(1);                       // [B, D]
    st.h = init_h->forward(mean);                       // [B, H]
    st.c = init_c->forward(mean);                       // [B, H]
    if (options_.init_state == InitState::tanh) {
      st.h = at::tanh(st.h);
      st.c = at::tanh(st.c);
    }
  } else {
    st.h = at::zeros({features.size(0), options_.hidden_dim}, features.options());
    st.c = at::zeros_like(st.h);
  }
  st.beam = 1;
  return st;
}

std::pair<at::Tensor, at::Tensor> DecoderImpl::attend(const DecoderState& st) {
  // e_ti = w^T act(W_a a_i + b + U_a h_{t-1}) + c (eq. 4, the original code's f_att), each image's
  // projected features shared by its beam's rows (satcap/ops/attention_scores.h).
  auto e = attention_scores(st.projected, att_hidden->forward(st.h), att_score->weight, att_score->bias, st.beam,
                            options_.attention_activation == AttentionActivation::relu);  // [R, n]
  return normalise(e);
}

std::pair<at::Tensor, at::Tensor> DecoderImpl::normalise(const at::Tensor& e) {
  // float32 whatever the scores' type (under autocast they may be bfloat16 or float16): the
  // attention weights sum to 1 and hard attention samples from them.
  auto log_alpha = at::log_softmax(e, 1, at::kFloat);  // [R, n]
  auto alpha = at::softmax(e, 1, at::kFloat);          // [R, n]  alpha_t (eq. 5)
  return {alpha, log_alpha};
}

at::Tensor DecoderImpl::expected_context(const DecoderState& st, const at::Tensor& alpha) const {
  // sum_i alpha_ti a_i (eq. 13): [R, n] over [B, n, D] -> [R, D] (satcap/ops/attention_scores.h)
  return attention_context(st.features, alpha, st.beam);
}

at::Tensor DecoderImpl::located_context(const DecoderState& st, const at::Tensor& locations) const {
  const int64_t n = st.features.size(1), D = st.features.size(2);
  auto image = at::arange(st.rows(), locations.options()).div(st.beam, "floor");  // [R]
  auto flat = image * n + locations;                                                 // [R]
  return st.features.reshape({-1, D}).index_select(0, flat);                         // [R, D]  a_{s_t}
}

at::Tensor DecoderImpl::gate(const at::Tensor& h, const at::Tensor& context) {
  if (options_.beta == BetaKind::none) return context;
  return gated(f_beta->forward(h), context);
}

at::Tensor DecoderImpl::gated(const at::Tensor& beta_logits, const at::Tensor& context) {
  return at::sigmoid(beta_logits) * context;  // beta_t = sigmoid(f_beta(h_{t-1})), [R, 1] or [R, D]
}

at::Tensor DecoderImpl::output_logits(const at::Tensor& emb, const at::Tensor& h, const at::Tensor& z,
                                      const at::Tensor& row_keys) {
  auto drop = [&](const at::Tensor& x) {  // satcap/ops/dropout.h
    return row_keys.defined() ? satcap::dropout(x, options_.dropout, is_training(), row_keys)
                              : satcap::dropout(x, options_.dropout, is_training());
  };
  if (!options_.deep_output) return out_vocab->forward(drop(h));
  // Deep output (eq. 7): L_o(E y_{t-1} + L_h h_t + L_z z_t), dropout on h_t and on the sum as the
  // original code (which also puts a tanh on the sum; the paper's equation has none).
  auto sum = emb + out_hidden->forward(drop(h)) + out_context->forward(z);
  return out_vocab->forward(drop(sum));
}

StepOutput DecoderImpl::step(const at::Tensor& prev_ids, DecoderState& st, HardDecode mode) {
  auto emb = embed->forward(prev_ids);  // [R, m]  E y_{t-1}
  auto [alpha, log_alpha] = attend(st);
  at::Tensor z;  // [R, D]
  if (options_.attention == AttentionKind::soft || mode == HardDecode::expected) {
    z = expected_context(st, alpha);
  } else if (mode == HardDecode::sample) {
    z = located_context(st, at::multinomial(alpha, 1).squeeze(1));
  } else {
    z = located_context(st, alpha.argmax(1));
  }
  z = gate(st.h, z);
  auto hc = lstm->forward(at::cat({emb, z}, 1), std::make_tuple(st.h, st.c));
  st.h = std::get<0>(hc);
  st.c = std::get<1>(hc);
  auto logits = output_logits(emb, st.h, z);  // [R, V]
  return {at::log_softmax(logits, 1, at::kFloat), alpha};  // float32: the beam sums these
}

LossTerms DecoderImpl::loss(const DecoderOutput& out) {
  const auto& o = options_;
  LossTerms r;
  const auto& mask = out.mask;                                                       // [B, S]
  // The NLL over the valid positions only, from the packed logits: the forward's, with their
  // positions, or those of an output made by hand, in the mask's row-major order.
  const int64_t B = mask.size(0), S = mask.size(1);
  auto index = out.valid_index.defined() ? out.valid_index : mask.reshape({-1}).nonzero().view({-1});  // [N]
  const auto& logits = out.valid_logits;                                             // [N, V]
  if (!logits.defined() || logits.dim() != 2 || logits.size(0) != index.size(0))
    throw UsageError("decoder loss: valid_logits have shape " + (logits.defined() ? shape_of(logits) : "undefined") +
                     ", expected [" + std::to_string(index.size(0)) + ", V] for the mask's valid positions");
  auto nll = token_nll(logits, out.targets.reshape({-1}).index_select(0, index));    // [N] (satcap/ops/token_nll.h)
  auto position_nll = at::zeros({B * S}, nll.options()).index_copy(0, index, nll).view({B, S});         // [B, S]
  // Tokens in the batch; in data-parallel training those of the global batch, so that the parts'
  // gradients sum to the gradient of the global loss.
  const bool part = out.global_tokens >= 0;
  auto N = part ? at::scalar_tensor(static_cast<double>(std::max<int64_t>(1, out.global_tokens)), mask.options())
                : mask.sum().clamp_min(1);
  auto caption_nll = position_nll.sum(1);                                            // [B]  NLL_n
  r.tokens = N.detach();
  r.caption_nll = caption_nll.detach();
  r.nll = caption_nll.sum() / N;

  // Doubly stochastic regularisation (eq. 14) over each caption's valid steps; a caption with no
  // valid step (an all-padding row) contributes nothing.
  auto coverage = (out.alphas * mask.unsqueeze(2)).sum(1);                           // [B, n]  sum_t alpha_ti
  auto has_steps = (mask.sum(1) > 0).to(mask.scalar_type());                         // [B]
  r.ds_reg = o.alpha_c * ((1 - coverage).pow(2).sum(1) * has_steps).sum() / N;
  r.caption_nll_sum = (caption_nll.detach() * has_steps).sum();

  auto zero = at::zeros({}, logits.options());
  r.reinforce = zero;
  r.entropy = zero;
  r.baseline = baseline_.detach().clone();
  if (out.sampled) {
    // REINFORCE with the NLL as the cost to minimise (the negative reward). For a caption n with
    // locations s ~ p(s | a) = prod_t alpha_t[s_t]:
    //   d/dW E_s[NLL_n(s)] = E_s[ dNLL_n(s)/dW + (NLL_n(s) - b) * d log p(s)/dW ]
    // for any b independent of s. The surrogate NLL_n + (NLL_n - b).detach() * log p(s) has exactly
    // this gradient, so the term is ADDED with a plus sign: locations that gave a worse-than-baseline
    // NLL get their log-probability pushed down. lambda_r (0.1, the original code) scales it, and it
    // is divided by N like the NLL so that lambda_r = 1 gives the unbiased gradient of `nll`.
    auto advantage = caption_nll.detach() - r.baseline;                              // [B]  NLL_n - b
    auto log_p_s = (out.sample_log_probs * mask).sum(1);                             // [B]  sum_t log alpha_t[s_t]
    r.reinforce = o.lambda_r * (advantage * log_p_s).sum() / N;
    // Entropy bonus lambda_e * H[s]: maximised, hence subtracted from the loss.
    r.entropy = o.lambda_e * (out.entropies * mask).sum() / N;
  }
  r.total = r.nll + r.ds_reg + r.reinforce - r.entropy;

  // Once per minibatch, after b was used above (a part of a global batch: by the caller, with the
  // global sums).
  if (o.attention == AttentionKind::hard && is_training() && !part)
    update_baseline(r.caption_nll_sum, has_steps.sum().clamp_min(1));
  return r;
}

void DecoderImpl::update_baseline(const at::Tensor& nll_sum, const at::Tensor& captions) {
  // b <- decay * b + (1 - decay) * mean_n NLL_n
  torch::NoGradGuard no_grad;
  auto mean_nll = nll_sum / captions;
  baseline_.mul_(options_.baseline_decay).add_(mean_nll.to(baseline_.scalar_type()) * (1 - options_.baseline_decay));
}

}  // namespace satcap
