// The decoder's training path: the teacher-forced forward over a caption batch, fused and packed
// for speed. It computes what DecoderImpl::step computes for every row and step (decoder.cpp, the
// readable reference; tests/test_decoder.cpp checks that they agree), but
//   - only valid steps: rows sorted by length, so step t runs the B_t captions still going;
//   - what is known before the recurrence is computed once for all steps: the embeddings E y_{t-1}
//     and their part of the LSTM gates [N, 4H], W_a a_i + b per image, the output layer over all
//     valid steps [N, V];
//   - per step, the three maps of h_{t-1} (U_a, f_beta, W_hh) in one product whose weight gradient
//     is one product over all steps (satcap/ops/step_linear.h); the attention scores, the context,
//     the LSTM cell and the NLL as fused operations with their own backward (satcap/ops).
#include "satcap/model/decoder.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>
#include <vector>

#include "model/decoder_tensors.h"
#include "satcap/ops/attention_scores.h"
#include "satcap/ops/fused_kernels.h"
#include "satcap/ops/lstm_cell.h"
#include "satcap/ops/step_linear.h"
#include "satcap/runtime/error.h"

namespace satcap {

using detail::padded;
using detail::shape_of;

DecoderOutput DecoderImpl::forward(const at::Tensor& features, const at::Tensor& captions,
                                   const at::Tensor& lengths) {
  return forward(features, captions, lengths, static_cast<const BatchSlice*>(nullptr));
}

DecoderOutput DecoderImpl::forward(const at::Tensor& features, const at::Tensor& captions, const at::Tensor& lengths,
                                   const BatchSlice* slice) {
  Context ctx = Context::expected;
  if (options_.attention == AttentionKind::hard && is_training()) {
    // Semi-sampling, drawn once per minibatch on the CPU generator (no device synchronisation).
    const double p = options_.semi_sampling_p;
    bool soft = p >= 1 || (p > 0 && at::rand({1}, at::TensorOptions().dtype(at::kDouble)).item<double>() < p);
    ctx = soft ? Context::expected : Context::sample;
  }
  return teacher_forced(features, captions, lengths, ctx, {}, slice);
}

DecoderOutput DecoderImpl::forward(const at::Tensor& features, const at::Tensor& captions, const at::Tensor& lengths,
                                   HardDecode mode) {
  Context ctx = Context::expected;
  if (options_.attention == AttentionKind::hard)
    ctx = mode == HardDecode::sample ? Context::sample : mode == HardDecode::argmax ? Context::argmax : Context::expected;
  return teacher_forced(features, captions, lengths, ctx, {});
}

DecoderOutput DecoderImpl::forward_at(const at::Tensor& features, const at::Tensor& captions,
                                      const at::Tensor& lengths, const at::Tensor& locations) {
  if (options_.attention != AttentionKind::hard)
    throw UsageError("decoder forward_at: locations are given, but this decoder has soft attention");
  if (locations.dim() != 2 || locations.size(0) != captions.size(0) || locations.size(1) != captions.size(1) - 1)
    throw UsageError("decoder forward_at: locations have shape " + shape_of(locations) + ", expected [B, T-1]");
  return teacher_forced(features, captions, lengths, Context::given, locations.to(features.device(), at::kLong));
}

at::Tensor DecoderImpl::sample_locations(const at::Tensor& alpha, int64_t rows, int64_t offset) {
  // at::multinomial(alpha, 1) is exactly argmax(alpha / q) with q = empty_like(alpha).exponential_()
  // (its one-sample path, LibTorch 1.13 and 2.x): the same draw, made for all `rows`.
  auto q = at::empty({rows, alpha.size(1)}, alpha.options()).exponential_(1);  // [rows, n]
  return (alpha / q.narrow(0, offset, alpha.size(0))).argmax(1);              // [B_t]
}

DecoderOutput DecoderImpl::teacher_forced(const at::Tensor& features, const at::Tensor& captions,
                                          const at::Tensor& lengths, Context context, const at::Tensor& locations,
                                          const BatchSlice* slice) {
  check_features(features, "forward");
  const int64_t B = features.size(0);
  if (captions.dim() != 2 || captions.size(0) != B || captions.size(1) < 2)
    throw UsageError("decoder forward: captions have shape " + shape_of(captions) + ", expected [" +
                     std::to_string(B) + ", T] with T >= 2");
  if (lengths.dim() != 1 || lengths.size(0) != B)
    throw UsageError("decoder forward: lengths have shape " + shape_of(lengths) + ", expected [" +
                     std::to_string(B) + "]");
  const int64_t S = captions.size(1) - 1, n = features.size(1);
  const auto dev = features.device();
  auto caps = captions.to(dev, at::kLong);
  const bool hard = options_.attention == AttentionKind::hard;
  const bool located = hard && context != Context::expected;

  // No padded work (the "decreasing batch size" of packed sequences): caption b has
  // L_b = clamp(length_b - 1, 0, S) valid steps. Rows are sorted by decreasing L_b (stable), so at
  // step t the active rows are the first B_t of the sorted batch; a finished row's state is never
  // used again. Every row computes exactly what it computes alone: the rows never mix.
  std::vector<int64_t> steps(static_cast<size_t>(B));
  {
    auto len = lengths.to(at::kCPU, at::kLong).contiguous();
    const int64_t* l = len.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) steps[static_cast<size_t>(b)] = std::clamp<int64_t>(l[b] - 1, 0, S);
  }
  std::vector<int64_t> order(static_cast<size_t>(B));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return steps[static_cast<size_t>(a)] > steps[static_cast<size_t>(b)]; });
  const bool sorted = std::is_sorted(order.begin(), order.end());  // already in decreasing order
  const int64_t steps_max = B > 0 ? steps[static_cast<size_t>(order[0])] : 0;
  if (slice) slice->check(steps);  // a part of a global batch: sorted, and its rows where it says
  std::vector<int64_t> active;  // B_t for t < steps_max
  std::vector<int64_t> flat;    // packed positions, step-major: order[i] * S + t for i < B_t
  std::vector<int64_t> keys;    // a part's packed rows' positions in the global batch's packing
  int64_t global_packed = 0;    // rows of the global packing before step t
  for (int64_t t = 0; t < steps_max; ++t) {
    int64_t bt = 0;
    while (bt < B && steps[static_cast<size_t>(order[static_cast<size_t>(bt)])] > t) {
      flat.push_back(order[static_cast<size_t>(bt)] * S + t);
      if (slice) keys.push_back(global_packed + slice->row_offset + bt);
      ++bt;
    }
    active.push_back(bt);
    if (slice) global_packed += slice->active(t);
  }
  auto index = at::tensor(flat, at::kLong).to(dev);  // [N]

  DecoderState all = init_state(sorted ? features : features.index_select(0, at::tensor(order, at::kLong).to(dev)));
  // Embeddings and given locations of the valid steps only, packed like `index`, then cut per step.
  auto emb = embed->forward(caps.slice(1, 0, S).reshape({-1}).index_select(0, index));  // [N, m]  E y_{t-1}
  std::vector<at::Tensor> location_steps;
  if (context == Context::given) location_steps = locations.reshape({-1}).index_select(0, index).split_with_sizes(active, 0);
  // A narrowed view only when rows really drop out: narrowing the whole tensor would still cost a
  // full-size zero gradient in backward.
  auto first_rows = [](const at::Tensor& x, int64_t rows) { return rows == x.size(0) ? x : x.narrow(0, 0, rows); };
  // The LSTM (PyTorch's LSTMCell: gates i, f, g, o = W_ih [E y_{t-1}; z_t] + b_ih + W_hh h_{t-1} + b_hh),
  // split by what is known before the loop: the embeddings' part of every step at once ([N, 4H],
  // one product); per step the context's part W_ih,z z_t, and the hidden state's part W_hh h_{t-1}
  // in one product with the other two maps of h_{t-1}, U_a (attention) and f_beta (the gate). Each
  // per-step product's weight gradient is one product over all steps (satcap/ops/step_linear.h).
  const int64_t m = options_.embed_dim, D = features.size(2);
  const bool gated_context = options_.beta != BetaKind::none;
  // Split, not narrowed: the backward joins the two parts' gradients into one [4H, m + D] (two
  // narrows would each fill a zero [4H, m + D] and the two be added).
  auto input_maps = lstm->weight_ih.split_with_sizes({m, D}, 1);  // [4H, m], [4H, D]
  auto gates_emb = at::linear(emb, input_maps[0], lstm->bias_ih + lstm->bias_hh);  // [N, 4H]
  auto gates_emb_steps = gates_emb.split_with_sizes(active, 0);                                      // [B_t, 4H]
  std::vector<at::Tensor> hidden_maps{att_hidden->weight};  // [A, H], [beta, H], [4H, H]
  if (gated_context) hidden_maps.push_back(f_beta->weight);
  hidden_maps.push_back(lstm->weight_hh);
  std::vector<int64_t> hidden_widths;
  for (const auto& w : hidden_maps) hidden_widths.push_back(w.size(0));
  StepLinearSequence from_hidden(at::cat(hidden_maps, 0), static_cast<int64_t>(flat.size()));  // [A + beta + 4H, H]
  StepLinearSequence from_context(input_maps[1], static_cast<int64_t>(flat.size()));  // [4H, D], a view of W_ih
  // The scores of every step read the same projected features; their gradient is summed once.
  ScoreSequence scores(all.projected, att_score->weight, att_score->bias,
                       options_.attention_activation == AttentionActivation::relu);
  // Off satcap's CPU kernels (CUDA, other devices, autocast) every ATen operation is a kernel launch
  // of its own, so the per-step work is folded into fewer of them (satcap bench counts them): the
  // hidden product adds f_beta's bias and the embeddings' gate part in its addmm, the context's
  // product adds that in its own, the cell gets one part; hard attention's log alpha, entropy and
  // sample log-probabilities are computed once after the loop. The CPU kernels add the parts inside
  // the fused cell instead, as before.
  const bool generic = !uses_fused_cpu_kernels(features);
  std::vector<at::Tensor> hidden_bias_steps;  // generic: [B_t, A + beta + 4H]
  if (generic) {
    std::vector<at::Tensor> columns{at::zeros({static_cast<int64_t>(flat.size()), hidden_widths[0]}, gates_emb.options())};
    if (gated_context) columns.push_back(f_beta->bias.expand({static_cast<int64_t>(flat.size()), hidden_widths[1]}));
    columns.push_back(gates_emb);
    hidden_bias_steps = at::cat(columns, 1).split_with_sizes(active, 0);
  }
  const at::Tensor all_rows = all.features.reshape({-1, D});  // [B n, D]  a_i of every image, for a_{s_t}
  const at::Tensor row_base = located && generic ? at::arange(B, caps.options()).mul_(n) : at::Tensor();  // [B]
  at::Tensor h = all.h, c = all.c;  // [B_{t-1}, H]
  std::vector<at::Tensor> hs, zs, alphas, scores_of, samples, sample_lp, entropies;
  hs.reserve(static_cast<size_t>(steps_max));
  zs.reserve(static_cast<size_t>(steps_max));
  alphas.reserve(static_cast<size_t>(steps_max));
  for (int64_t t = 0; t < steps_max; ++t) {
    const int64_t bt = active[static_cast<size_t>(t)];
    DecoderState st;  // the B_t active rows (the projected features are the sequence's)
    st.features = first_rows(all.features, bt);
    st.h = first_rows(h, bt);
    st.c = first_rows(c, bt);
    // U_a h_{t-1} [B_t, A], f_beta's weight times h_{t-1} [B_t, beta] (if gated), W_hh h_{t-1} [B_t, 4H]
    // (generic: with f_beta's bias and the embeddings' gate part added)
    auto of_hidden = (generic ? from_hidden.next(st.h, hidden_bias_steps[static_cast<size_t>(t)]) : from_hidden.next(st.h))
                         .split_with_sizes(hidden_widths, 1);
    const at::Tensor e = scores.next(of_hidden.front());  // [B_t, n]
    at::Tensor alpha, log_alpha;                           // [B_t, n]
    if (hard && !generic) {
      std::tie(alpha, log_alpha) = normalise(e);
    } else {
      alpha = at::softmax(e, 1, at::kFloat);  // soft attention needs no log alpha; generic: after the loop
      if (hard) scores_of.push_back(e);
    }
    at::Tensor z;                              // [B_t, D]
    if (!located) {
      z = expected_context(st, alpha);
    } else {
      at::Tensor s;                            // [B_t]  s_t
      if (context == Context::sample)
        s = sample_locations(alpha.detach(), slice ? slice->active(t) : bt, slice ? slice->row_offset : 0);
      else if (context == Context::argmax)
        s = alpha.detach().argmax(1);
      else
        s = location_steps[static_cast<size_t>(t)];
      z = generic ? all_rows.index_select(0, first_rows(row_base, bt) + s) : located_context(st, s);  // a_{s_t}
      samples.push_back(s);
      if (!generic) sample_lp.push_back(log_alpha.gather(1, s.unsqueeze(1)).squeeze(1));  // log alpha_t[s_t]
    }
    if (hard && !generic) entropies.push_back(-(alpha * log_alpha).sum(1));  // H(alpha_t)
    if (generic) {
      if (gated_context) z = at::sigmoid(of_hidden[1]) * z;  // beta_t z_t (f_beta's bias is in the product)
      // The gates [B_t, 4H]: W_ih,z z_t added to the other parts in the context's product; on CUDA
      // as the second of two parts, which ATen's fused cell adds in its one launch.
      if (features.is_cuda())
        std::tie(h, c) = lstm_cell({from_context.next(z), of_hidden.back()}, st.c);
      else
        std::tie(h, c) = lstm_cell({from_context.next(z, of_hidden.back())}, st.c);
    } else {
      if (gated_context) z = gated(of_hidden[1] + f_beta->bias, z);
      // The gates [B_t, 4H] are the sum of the three parts, added inside the fused cell (satcap/ops/lstm_cell.h).
      std::tie(h, c) = lstm_cell({gates_emb_steps[static_cast<size_t>(t)], from_context.next(z), of_hidden.back()}, st.c);
    }
    hs.push_back(h);
    zs.push_back(z);
    alphas.push_back(alpha);
  }
  // The global batch's later steps, where this part's rows have ended: their draws all the same,
  // so that the random state stays the same on every process.
  if (slice && context == Context::sample) {
    const int64_t global_steps = slice->global_steps.empty() ? 0 : slice->global_steps.front();
    for (int64_t t = steps_max; t < global_steps; ++t)
      at::empty({slice->active(t), n}, features.options().dtype(at::kFloat)).exponential_(1);
  }
  // Packed [N, ...] from the per-step pieces; an empty [0, width] when there is no valid step.
  auto packed = [&](const std::vector<at::Tensor>& xs, int64_t width, const at::TensorOptions& opts) {
    if (xs.empty()) return width < 0 ? at::empty({0}, opts) : at::empty({0, width}, opts);
    return at::cat(xs, 0);
  };
  // Into [B, S, ...] in the caller's row order; positions past a caption's end hold `fill`.
  auto unpack = [&](const at::Tensor& x, double fill) { return padded(x, index, B, S, fill); };
  const auto fopts = features.options();
  DecoderOutput out;
  // The output layer runs once over the valid steps: [N, m], [N, H], [N, D] -> [N, V].
  out.valid_logits = output_logits(emb, packed(hs, options_.hidden_dim, fopts), packed(zs, features.size(2), fopts),
                                   slice ? at::tensor(keys, at::kLong) : at::Tensor());
  out.valid_index = index;
  // Off the CPU kernels, with soft attention and no doubly stochastic term nothing differentiates
  // alpha_t through out.alphas (the loss multiplies it by alpha_c = 0): it stays out of the graph,
  // one gradient accumulation per step less.
  const bool alphas_in_graph = !generic || hard || options_.alpha_c != 0;
  const at::Tensor alphas_packed = packed(alphas, n, fopts);
  out.alphas = unpack(alphas_in_graph ? alphas_packed : alphas_packed.detach(), 1.0 / n);  // [B, S, n]
  out.targets = caps.slice(1, 1, S + 1);       // [B, S]
  auto valid = lengths.to(dev, at::kLong).sub(1).unsqueeze(1);                       // [B, 1]
  out.mask = (at::arange(S, caps.options()).unsqueeze(0) < valid).to(features.scalar_type());  // [B, S]
  at::Tensor sample_lp_packed, entropies_packed;  // [N]
  if (hard && generic) {
    // log alpha_t of every valid step at once, then H(alpha_t) and log alpha_t[s_t].
    const at::Tensor alpha_packed = packed(alphas, n, fopts);
    const at::Tensor log_alpha = at::log_softmax(packed(scores_of, n, fopts), 1, at::kFloat);  // [N, n]
    entropies_packed = -(alpha_packed * log_alpha).sum(1);
    if (located) sample_lp_packed = log_alpha.gather(1, packed(samples, -1, caps.options()).unsqueeze(1)).squeeze(1);
  } else {
    if (located) sample_lp_packed = packed(sample_lp, -1, fopts);
    if (hard) entropies_packed = packed(entropies, -1, fopts);
  }
  if (located) {
    out.samples = unpack(packed(samples, -1, caps.options()), 0);               // [B, S]
    out.sample_log_probs = unpack(sample_lp_packed, -std::log(static_cast<double>(n)));
    out.sampled = true;
  }
  if (hard) out.entropies = unpack(entropies_packed, std::log(static_cast<double>(n)));
  if (slice) {
    out.global_tokens = slice->tokens();
    out.global_captions = slice->captions();
  }
  return out;
}

}  // namespace satcap
