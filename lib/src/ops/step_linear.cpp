#include "satcap/ops/step_linear.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ops/cpu_kernels.h"
#include "ops/cpu/small_gemm_kernels.h"
#include "satcap/ops/fused_kernels.h"
#include "satcap/runtime/error.h"

namespace satcap {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// Row counts up to which the per-step products take the packed-panel kernel instead of at::mm
// (kernels/small_gemm_kernels.h: faster up to about 56 rows, the same at 64, on [M, 2048] x
// [2048, 2048] and [M, 512] x [512, 4608] with 2 threads).
constexpr int64_t kPanelRows = 64;

bool panel_rows(const at::Tensor& x, const at::Tensor& w) {
  return x.size(0) <= kPanelRows && detail::cpu_float({&x, &w});
}

// Fills `packed` (empty until the first step that needs it; the same tensor for all the steps)
// with the panels of B = w^T (transposed) or B = w, for products x B. A weight whose rows are
// strided (a column block of a larger one, such as W_ih's context part) is read in place.
void pack_once(at::Tensor packed, const at::Tensor& w, bool transposed) {
  if (packed.numel() != 0) return;
  const auto wc = detail::unit_columns(w);
  const int64_t K = transposed ? wc.size(1) : wc.size(0), N = transposed ? wc.size(0) : wc.size(1);
  packed.resize_({kernels::panels_of(N) * K * kernels::kPanel});
  const auto& k = kernels::small_gemm_kernels();
  const auto pack = transposed ? k.pack_transposed : k.pack_plain;
  const float* wp = wc.data_ptr<float>();
  float* out = packed.data_ptr<float>();
  const int64_t ld = wc.stride(0);
  at::parallel_for(0, kernels::panels_of(N), 1, [&](int64_t b, int64_t e) { pack(wp, ld, out, K, N, b, e); });
}

// x [M, K] times the packed B [K, N] (pack_once) -> [M, N].
at::Tensor panel_product(const at::Tensor& x, const at::Tensor& packed, int64_t N) {
  const auto xc = x.contiguous();
  const int64_t M = xc.size(0), K = xc.size(1);
  const auto& k = kernels::small_gemm_kernels();
  const int64_t tiles = (M + k.rows_per_tile - 1) / k.rows_per_tile;
  auto x_packed = at::empty({tiles * k.rows_per_tile * K}, xc.options());  // [tiles][K][rows_per_tile]
  auto y = at::empty({M, N}, xc.options());
  const float* xp = xc.data_ptr<float>();
  float* xpp = x_packed.data_ptr<float>();
  at::parallel_for(0, tiles, 1, [&](int64_t b, int64_t e) { k.pack_rows(xp, xpp, M, K, b, e); });
  const float* bp = packed.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, kernels::panels_of(N), 1,
                   [&](int64_t b, int64_t e) { k.gemm(xpp, bp, yp, M, K, N, b, e); });
  return y;
}

// Outputs y = x W^T and W itself, passed on to the next step: the next step's node consumes this
// one's output, so its backward runs first and the first step's backward runs last; that one
// computes dW over every step's rows (and adds any gradient that reached the passed-on weight).
// With a bias (a defined, non-empty [R_t, out] or [out]), y = bias + x W^T in one addmm; its
// gradient is y's.
struct DeferredLinear : public torch::autograd::Function<DeferredLinear> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const at::Tensor& bias, const at::Tensor& inputs, const at::Tensor& grads,
                               const at::Tensor& used, const at::Tensor& packed_forward,
                               const at::Tensor& packed_backward, int64_t offset, bool first) {
    const int64_t rows = x.size(0);
    inputs.narrow(0, offset, rows).copy_(x);
    ctx->set_materialize_grads(false);  // no zero-filled [out, in] for the passed-on weight
    ctx->save_for_backward({weight});
    ctx->saved_data["inputs"] = inputs;
    ctx->saved_data["grads"] = grads;
    ctx->saved_data["used"] = used;
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["rows"] = rows;
    ctx->saved_data["first"] = first;
    ctx->saved_data["packed_backward"] = packed_backward;
    const bool has_bias = bias.numel() > 0;
    ctx->saved_data["has_bias"] = has_bias;
    at::Tensor y;  // [R_t, out]
    if (panel_rows(x, weight)) {
      pack_once(packed_forward, weight, /*transposed=*/true);  // B = W^T [in, out]
      y = panel_product(x, packed_forward, weight.size(0));
      if (has_bias) y.add_(bias);
    } else {
      y = has_bias ? at::addmm(bias, x, weight.t()) : at::mm(x, weight.t());
    }
    return {y, weight};
  }

  static variable_list backward(AutogradContext* ctx, variable_list g) {
    const at::Tensor weight = ctx->get_saved_variables()[0];  // [out, in]
    at::Tensor inputs = ctx->saved_data["inputs"].toTensor(), grads = ctx->saved_data["grads"].toTensor();
    const int64_t offset = ctx->saved_data["offset"].toInt(), rows = ctx->saved_data["rows"].toInt();
    auto slot = grads.narrow(0, offset, rows);  // [R_t, out]
    if (g[0].defined()) slot.copy_(g[0]);
    else slot.zero_();
    at::Tensor dx;  // [R_t, in]
    if (panel_rows(slot, weight)) {
      at::Tensor packed = ctx->saved_data["packed_backward"].toTensor();
      pack_once(packed, weight, /*transposed=*/false);  // B = W [out, in]
      dx = panel_product(slot, packed, weight.size(1));
    } else {
      dx = at::mm(slot, weight);
    }
    at::Tensor dw = g[1];                  // a later use of the passed-on weight (none in a plain sequence)
    if (ctx->saved_data["first"].toBool()) {
      // [out, in]: every step's rows in one product (the rows the steps wrote; the buffers are not
      // zero-filled, so rows announced but never used are left out).
      const int64_t rows_used = ctx->saved_data["used"].toTensor().data_ptr<int64_t>()[0];
      auto all = at::mm(grads.narrow(0, 0, rows_used).t(), inputs.narrow(0, 0, rows_used));
      dw = dw.defined() ? dw + all : all;
    }
    at::Tensor dbias;
    if (ctx->saved_data["has_bias"].toBool() && g[0].defined()) dbias = g[0];
    return {dx, dw, dbias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Off the CPU kernels (what CUDA runs): y = x W^T (+ bias) with no copies into row buffers, so one
// launch per step forward and one (dx) backward. The steps' inputs are kept as they are, in the
// order of the steps, and their output gradients as they arrive (last step first); the first step's
// backward, which runs last, joins each list once and computes dW over all the steps in one
// product, as DeferredLinear does from its buffers.
struct ListedLinear : public torch::autograd::Function<ListedLinear> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const at::Tensor& bias, c10::List<at::Tensor> inputs, c10::List<at::Tensor> grads,
                               bool first) {
    const bool has_bias = bias.numel() > 0;
    // Detached: x's own graph leads back to this node (x is h_{t-1}, made from earlier steps'
    // outputs), and a saved list holding it would keep the whole graph alive in a cycle (found by
    // LeakSanitizer). Its values are all the weight gradient needs.
    inputs.push_back(x.detach());
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({weight});
    ctx->saved_data["inputs"] = inputs;
    ctx->saved_data["grads"] = grads;
    ctx->saved_data["first"] = first;
    ctx->saved_data["has_bias"] = has_bias;
    ctx->saved_data["rows"] = x.size(0);
    return {has_bias ? at::addmm(bias, x, weight.t()) : at::mm(x, weight.t()), weight};
  }

  static variable_list backward(AutogradContext* ctx, variable_list g) {
    const at::Tensor weight = ctx->get_saved_variables()[0];  // [out, in]
    auto grads = ctx->saved_data["grads"].toTensorList();
    at::Tensor dy = g[0].defined() ? g[0] : at::zeros({ctx->saved_data["rows"].toInt(), weight.size(0)}, weight.options());
    grads.push_back(dy);
    // Under autocast the forward's product ran in a lower precision and its gradients come in that
    // type: the backward's products run in it too, and dW returns in the weight's own type.
    const auto type = dy.scalar_type();
    at::Tensor dx = g[0].defined() ? at::mm(dy, weight.to(type)) : at::Tensor();  // [R_t, in]
    at::Tensor dw = g[1];
    if (ctx->saved_data["first"].toBool()) {
      auto inputs = ctx->saved_data["inputs"].toTensorList();
      std::vector<at::Tensor> dys(grads.begin(), grads.end());
      std::reverse(dys.begin(), dys.end());  // into the steps' order
      std::vector<at::Tensor> xs(inputs.begin(), inputs.end());
      auto all = at::mm(at::cat(dys, 0).t(), at::cat(xs, 0).to(type)).to(weight.scalar_type());  // [out, in]
      dw = dw.defined() ? dw + all : all;
      grads.clear();  // a second backward over the same graph (retain_graph) collects them again;
                      // the inputs stay until the graph is freed
    }
    at::Tensor dbias;
    if (ctx->saved_data["has_bias"].toBool() && g[0].defined()) dbias = g[0];
    return {dx, dw, dbias, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

StepLinearSequence::StepLinearSequence(at::Tensor weight, int64_t total_rows)
    : weight_(std::move(weight)), total_rows_(total_rows), listed_(!uses_fused_cpu_kernels(weight_)) {
  if (listed_) return;  // no row buffers off the CPU kernels (ListedLinear)
  inputs_ = at::empty({total_rows, weight_.size(1)}, weight_.options().requires_grad(false));
  grads_ = at::empty({total_rows, weight_.size(0)}, weight_.options().requires_grad(false));
  used_ = at::zeros({1}, at::TensorOptions().dtype(at::kLong));  // on the CPU, read by the backward
  packed_forward_ = at::empty({0}, weight_.options().requires_grad(false));
  packed_backward_ = at::empty({0}, weight_.options().requires_grad(false));
}

at::Tensor StepLinearSequence::next(const at::Tensor& x) { return next(x, at::Tensor()); }

at::Tensor StepLinearSequence::next(const at::Tensor& x, const at::Tensor& bias) {
  if (x.dim() != 2 || x.size(1) != weight_.size(1))
    throw UsageError("step linear: input of shape " + c10::str(x.sizes()) + " for a weight of shape " +
                     c10::str(weight_.sizes()));
  if (offset_ + x.size(0) > total_rows_)
    throw UsageError("step linear: more rows than the " + std::to_string(total_rows_) + " announced");
  const at::Tensor b = bias.defined() ? bias : at::empty({0}, x.options());  // autograd takes no undefined input
  if (listed_) {
    auto out = ListedLinear::apply(x, weight_, b, listed_inputs_, listed_grads_, first_);
    offset_ += x.size(0);
    first_ = false;
    weight_ = out[1];
    return out[0];
  }
  auto out = DeferredLinear::apply(x, weight_, b, inputs_, grads_, used_, packed_forward_, packed_backward_, offset_, first_);
  offset_ += x.size(0);
  used_.data_ptr<int64_t>()[0] = offset_;
  first_ = false;
  weight_ = out[1];
  return out[0];
}

}  // namespace satcap
