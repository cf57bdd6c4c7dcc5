#include "satcap/ops/attention_scores.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>

#include "ops/cpu_kernels.h"
#include "ops/cpu/attention_scores_kernels.h"

namespace satcap {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

using detail::cpu_float;
using detail::grain_for;

kernels::ScoreArgs args_of(const at::Tensor& P, const at::Tensor& U, const at::Tensor& w, const at::Tensor& c,
                           int64_t beam, bool relu) {
  kernels::ScoreArgs a;
  a.projected = P.data_ptr<float>();
  a.hidden = U.data_ptr<float>();
  a.w = w.data_ptr<float>();
  a.bias = c.defined() && c.numel() == 1 ? c.item<float>() : 0.0f;
  a.rows = U.size(0);
  a.regions = P.size(1);
  a.width = P.size(2);
  a.beam = beam;
  a.relu = relu;
  return a;
}

// Outputs: the scores [R, n] and `projected` itself, passed on to the next step of a sequence so
// that the next step's node is a consumer of this one (its backward runs first).
// sum: with `summed`, an empty tensor shared by the steps of a ScoreSequence. Every tensor argument
// must be defined (autograd records each input's device): an absent bias is an empty tensor.
struct FusedScores : public torch::autograd::Function<FusedScores> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& projected, const at::Tensor& hidden,
                               const at::Tensor& weight, const at::Tensor& bias, int64_t beam, bool relu,
                               const at::Tensor& sum, bool summed, bool first) {
    auto P = projected.contiguous();
    auto U = hidden.contiguous();
    auto w = weight.contiguous().view({-1});
    auto c = bias.contiguous();
    const int64_t R = U.size(0), n = P.size(1);
    auto e = at::empty({R, n}, P.options());  // [R, n]
    const kernels::ScoreArgs a = args_of(P, U, w, c, beam, relu);
    const auto& k = kernels::score_kernels();
    float* out = e.data_ptr<float>();
    at::parallel_for(0, R * n, grain_for(a.width), [&](int64_t b, int64_t end) { k.forward(a, b, end, out); });
    ctx->set_materialize_grads(false);  // no zero-filled [images, n, A] for the passed-on features
    ctx->save_for_backward({P, U, w, c});
    ctx->saved_data["beam"] = beam;
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["first"] = first;
    if (summed) ctx->saved_data["sum"] = sum;  // the same storage for every step of the sequence
    return {e, projected};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &P = saved[0], &U = saved[1], &w = saved[2], &c = saved[3];
    const int64_t beam = ctx->saved_data["beam"].toInt();
    const bool relu = ctx->saved_data["relu"].toBool(), first = ctx->saved_data["first"].toBool();
    const bool summed = ctx->saved_data.count("sum") > 0;
    const int64_t R = U.size(0), n = P.size(1), A = P.size(2);
    at::Tensor de = grads[0].defined() ? grads[0].contiguous() : at::zeros({R, n}, P.options());  // [R, n]
    const int64_t images = std::min<int64_t>(P.size(0), (R + beam - 1) / beam);

    at::Tensor dP;  // [images_all, n, A]
    if (summed) {
      dP = ctx->saved_data["sum"].toTensor();
      if (dP.numel() == 0) dP.resize_(P.sizes()).zero_();  // the sequence's last step: the first backward
      if (grads[1].defined()) dP.add_(grads[1]);  // a later step that took the plain expression
    } else {
      dP = at::zeros_like(P);
    }
    const int threads = at::get_num_threads();
    auto dU_parts = at::zeros({threads, R, A}, P.options());  // per-thread partial sums
    auto dw_parts = at::zeros({threads, A}, P.options());
    const kernels::ScoreArgs a = args_of(P, U, w, c, beam, relu);
    const auto& k = kernels::score_kernels();
    const float* g = de.data_ptr<float>();
    float* dp = dP.data_ptr<float>();
    float* du = dU_parts.data_ptr<float>();
    float* dw = dw_parts.data_ptr<float>();
    at::parallel_for(0, images * n, grain_for(A * beam), [&](int64_t b, int64_t end) {
      const int t = at::get_thread_num();
      k.backward(a, g, b, end, dp, du + t * R * A, dw + t * A);
    });
    at::Tensor dP_out;  // undefined for a sequence's later steps: their part is in the sum
    if (!summed) {
      dP_out = grads[1].defined() ? dP + grads[1] : dP;
    } else if (first) {
      // Hand the sum's storage over (no copy) and leave the shared buffer empty, with a storage of
      // its own, for another forward pass.
      dP_out = at::empty({0}, dP.options());
      dP_out.set_(dP);
      dP.set_();
    }
    auto dU = threads == 1 ? dU_parts[0] : dU_parts.sum(0);          // [R, A]
    auto dweight = (threads == 1 ? dw_parts[0] : dw_parts.sum(0)).view({1, A});  // [1, A]
    auto dbias = c.numel() == 1 ? de.sum().view({1}) : at::Tensor();
    return {dP_out, dU, dweight, dbias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct FusedContext : public torch::autograd::Function<FusedContext> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& features, const at::Tensor& alpha, int64_t beam) {
    auto F = features.contiguous();
    auto al = alpha.contiguous();
    const int64_t R = al.size(0), D = F.size(2);
    auto z = at::empty({R, D}, F.options());  // [R, D]
    kernels::ContextArgs a{F.data_ptr<float>(), F.size(1), D, beam};
    const auto& k = kernels::score_kernels();
    const float* ap = al.data_ptr<float>();
    float* zp = z.data_ptr<float>();
    at::parallel_for(0, R, grain_for(F.size(1) * D), [&](int64_t b, int64_t e) { k.context_forward(a, ap, b, e, zp); });
    ctx->save_for_backward({F});
    ctx->saved_data["beam"] = beam;
    ctx->saved_data["rows"] = R;
    return z;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor F = ctx->get_saved_variables()[0];
    const int64_t beam = ctx->saved_data["beam"].toInt(), R = ctx->saved_data["rows"].toInt();
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    auto dz = grads[0].contiguous();                       // [R, D]
    auto dalpha = at::empty({R, F.size(1)}, F.options());  // [R, n]
    kernels::ContextArgs a{F.data_ptr<float>(), F.size(1), F.size(2), beam};
    const auto& k = kernels::score_kernels();
    const float* g = dz.data_ptr<float>();
    float* out = dalpha.data_ptr<float>();
    at::parallel_for(0, R, grain_for(F.size(1) * F.size(2)), [&](int64_t b, int64_t e) { k.context_backward(a, g, b, e, out); });
    return {at::Tensor(), dalpha, at::Tensor()};
  }
};

// One step's scores of a ScoreSequence on any device (what CUDA runs), with a hand-written
// backward: forward three operations (the broadcast add, the activation, a matrix-vector product),
// backward five (the outer product with w, the activation's gradient, the row sum for U_a h, and
// running sums for the projected features' and w's gradients, which the sequence's first step
// hands to autograd once, as FusedScores does), where autograd's backward of the plain expression
// also adds every step's full [images, n, A] gradient of the shared projected features.
// Outputs: the scores [R, n] and `projected`, passed on to the next step (see FusedScores).
struct GenericScores : public torch::autograd::Function<GenericScores> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& projected, const at::Tensor& hidden,
                               const at::Tensor& weight, const at::Tensor& bias, bool relu, const at::Tensor& sum_projected,
                               const at::Tensor& sum_weight, bool first) {
    const int64_t R = hidden.size(0), n = projected.size(1), A = projected.size(2);
    auto t = projected.narrow(0, 0, R) + hidden.unsqueeze(1);  // [R, n, A]  W_a a_i + b + U_a h_{t-1}
    relu ? t.relu_() : t.tanh_();
    // [R, n]  w^T act(.) (under CPU autocast t may be bfloat16 and w float: mv takes one type)
    auto e = at::mv(t.view({R * n, A}), weight.view({A}).to(t.scalar_type())).view({R, n});
    const bool has_bias = bias.numel() == 1;
    if (has_bias) e.add_(bias);
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({t, weight});
    ctx->saved_data["sum_projected"] = sum_projected;  // empty until the sequence's first backward
    ctx->saved_data["sum_weight"] = sum_weight;
    ctx->saved_data["images"] = projected.size(0);
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["first"] = first;
    ctx->saved_data["has_bias"] = has_bias;
    return {e, projected};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &t = saved[0], &weight = saved[1];  // [R, n, A], [1, A]
    at::Tensor sum_projected = ctx->saved_data["sum_projected"].toTensor();
    at::Tensor sum_weight = ctx->saved_data["sum_weight"].toTensor();
    const int64_t R = t.size(0), n = t.size(1), A = t.size(2);
    if (sum_projected.numel() == 0) {  // the last step's backward runs first: the sums start here
      sum_projected.resize_({ctx->saved_data["images"].toInt(), n, A}).zero_();
      sum_weight.resize_({A}).zero_();
    }
    at::Tensor du, db;
    if (grads[0].defined()) {
      const at::Tensor& de = grads[0];                                     // [R, n]
      auto dt = de.unsqueeze(2) * weight.view({1, 1, A});                  // [R, n, A]
      auto dpre = ctx->saved_data["relu"].toBool() ? at::threshold_backward(dt, t, 0) : at::tanh_backward(dt, t);
      du = dpre.sum(1);                                                    // [R, A]  dL/d(U_a h_{t-1})
      sum_projected.narrow(0, 0, R).add_(dpre);
      // [A]  += act(.)^T de (under autocast in the sums' type: t may be bfloat16, de float)
      const auto type = sum_weight.scalar_type();
      sum_weight.addmv_(t.view({R * n, A}).t().to(type), de.reshape({R * n}).to(type));
      if (ctx->saved_data["has_bias"].toBool()) db = de.sum().view({1});
    }
    const bool first = ctx->saved_data["first"].toBool();
    return {first ? sum_projected : at::Tensor(), du, first ? sum_weight.view({1, A}) : at::Tensor(), db,
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void check_shapes(const at::Tensor& projected, const at::Tensor& hidden, const at::Tensor& weight, int64_t beam) {
  TORCH_CHECK(projected.dim() == 3 && hidden.dim() == 2 && hidden.size(1) == projected.size(2) &&
                  weight.numel() == projected.size(2),
              "attention_scores: projected ", projected.sizes(), ", hidden ", hidden.sizes(), ", weight ",
              weight.sizes(), " do not fit [images, n, A], [R, A], [1, A]");
  TORCH_CHECK(beam >= 1 && hidden.size(0) % beam == 0 && hidden.size(0) <= projected.size(0) * beam,
              "attention_scores: ", hidden.size(0), " rows for ", projected.size(0), " images of ", beam, " rows");
}

}  // namespace

at::Tensor attention_scores_reference(const at::Tensor& projected, const at::Tensor& hidden, const at::Tensor& weight,
                                      const at::Tensor& bias, int64_t beam, bool relu) {
  const int64_t R = hidden.size(0), n = projected.size(1), A = projected.size(2);
  const int64_t images = R / beam;
  // [images, beam, n, A]: each image's projected features broadcast over its rows.
  auto pre = projected.narrow(0, 0, images).unsqueeze(1) + hidden.view({images, beam, 1, A});
  pre = relu ? at::relu(pre) : at::tanh(pre);
  const at::Tensor c = bias.defined() && bias.numel() > 0 ? bias : at::Tensor();  // an empty bias is none
  return at::linear(pre, weight, c).view({R, n});  // [R, n]
}

at::Tensor attention_scores(const at::Tensor& projected, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& bias, int64_t beam, bool relu) {
  check_shapes(projected, hidden, weight, beam);
  if (!cpu_float({&projected, &hidden, &weight}))
    return attention_scores_reference(projected, hidden, weight, bias, beam, relu);
  auto none = at::empty({0}, projected.options());
  return FusedScores::apply(projected, hidden, weight, bias.defined() ? bias : none, beam, relu, none, false, false)[0];
}

ScoreSequence::ScoreSequence(at::Tensor projected, at::Tensor weight, at::Tensor bias, bool relu)
    : projected_(std::move(projected)), weight_(std::move(weight)), bias_(std::move(bias)), relu_(relu) {
  sum_ = at::empty({0}, projected_.options());
  if (!bias_.defined()) bias_ = at::empty({0}, projected_.options());  // autograd needs a defined input
}

at::Tensor ScoreSequence::next(const at::Tensor& hidden) {
  check_shapes(projected_, hidden, weight_, 1);
  if (!cpu_float({&projected_, &hidden, &weight_})) {
    if (!generic_sums_.defined()) {
      generic_sums_ = at::empty({0}, projected_.options().requires_grad(false));
      generic_weight_sum_ = at::empty({0}, projected_.options().requires_grad(false));
    }
    auto out = GenericScores::apply(projected_, hidden, weight_, bias_, relu_, generic_sums_, generic_weight_sum_, first_);
    first_ = false;
    projected_ = out[1];  // the next step consumes this step's output
    return out[0];
  }
  auto out = FusedScores::apply(projected_, hidden, weight_, bias_, int64_t{1}, relu_, sum_, true, first_);
  first_ = false;
  projected_ = out[1];  // the next step consumes this step's output
  return out[0];
}

at::Tensor attention_context_reference(const at::Tensor& features, const at::Tensor& alpha, int64_t beam) {
  const int64_t R = alpha.size(0), n = features.size(1), D = features.size(2), images = R / beam;
  // sum_i alpha_ti a_i: [images, beam, n] x [images, n, D] -> [images, beam, D]
  return at::bmm(alpha.view({images, beam, n}), features.narrow(0, 0, images)).view({R, D});
}

at::Tensor attention_context(const at::Tensor& features, const at::Tensor& alpha, int64_t beam) {
  TORCH_CHECK(features.dim() == 3 && alpha.dim() == 2 && alpha.size(1) == features.size(1) && beam >= 1 &&
                  alpha.size(0) % beam == 0 && alpha.size(0) <= features.size(0) * beam,
              "attention_context: features ", features.sizes(), ", alpha ", alpha.sizes(), ", beam ", beam,
              " do not fit [images, n, D], [R, n]");
  if (!cpu_float({&features, &alpha}) || (features.requires_grad() && at::GradMode::is_enabled())) return attention_context_reference(features, alpha, beam);
  return FusedContext::apply(features, alpha, beam);
}

const char* attention_scores_isa() { return kernels::score_kernels().isa; }

}  // namespace satcap
