#include "satcap/step_linear.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <string>

#include "cpu_kernels.h"
#include "kernels/small_gemm_kernels.h"
#include "satcap/error.h"

namespace satcap {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// Row counts up to which the per-step products take the small-row kernel instead of at::mm
// (measured on [M, 2048] x [2048, 2048] and [M, 512] x [512, 4608], 2 threads: faster up to 32
// rows, slower at 64).
constexpr int64_t kSmallRows = 32;

bool small_rows(const at::Tensor& x, const at::Tensor& w) {
  return x.size(0) <= kSmallRows && detail::cpu_float({&x, &w});
}

// x [M, K] and w [N, K] (CPU float) -> x w^T [M, N] by the small-row kernel (kernels/small_gemm_kernels.h).
at::Tensor small_times_transposed(const at::Tensor& x, const at::Tensor& w) {
  auto xc = x.contiguous(), wc = w.contiguous();
  const int64_t M = xc.size(0), K = xc.size(1), N = wc.size(0);
  auto y = at::empty({M, N}, xc.options());
  const auto& k = kernels::small_gemm_kernels();
  const float *xp = xc.data_ptr<float>(), *wp = wc.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  constexpr int64_t kColumns = 16;  // columns per work item
  at::parallel_for(0, (N + kColumns - 1) / kColumns, 1, [&](int64_t b, int64_t e) {
    k.nt(xp, wp, yp, M, K, N, b * kColumns, std::min(N, e * kColumns));
  });
  return y;
}

// Outputs y = x W^T and W itself, passed on to the next step: the next step's node consumes this
// one's output, so its backward runs first and the first step's backward runs last; that one
// computes dW over every step's rows (and adds any gradient that reached the passed-on weight).
struct DeferredLinear : public torch::autograd::Function<DeferredLinear> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const at::Tensor& inputs, const at::Tensor& grads, const at::Tensor& used,
                               const at::Tensor& transposed, int64_t offset, bool first) {
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
    ctx->saved_data["transposed"] = transposed;
    at::Tensor y = small_rows(x, weight) ? small_times_transposed(x, weight) : at::mm(x, weight.t());  // [R_t, out]
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
    if (small_rows(slot, weight)) {
      // dx = dy W = dy (W^T)^T: the small-row kernel on W^T, transposed once for the sequence.
      at::Tensor transposed = ctx->saved_data["transposed"].toTensor();  // [in, out]
      if (transposed.numel() == 0) transposed.resize_({weight.size(1), weight.size(0)}).copy_(weight.t());
      dx = small_times_transposed(slot, transposed);
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
    return {dx, dw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

StepLinearSequence::StepLinearSequence(at::Tensor weight, int64_t total_rows) : weight_(std::move(weight)) {
  inputs_ = at::empty({total_rows, weight_.size(1)}, weight_.options().requires_grad(false));
  grads_ = at::empty({total_rows, weight_.size(0)}, weight_.options().requires_grad(false));
  used_ = at::zeros({1}, at::TensorOptions().dtype(at::kLong));  // on the CPU, read by the backward
  transposed_ = at::empty({0}, weight_.options().requires_grad(false));
}

at::Tensor StepLinearSequence::next(const at::Tensor& x) {
  if (x.dim() != 2 || x.size(1) != weight_.size(1))
    throw UsageError("step linear: input of shape " + c10::str(x.sizes()) + " for a weight of shape " +
                     c10::str(weight_.sizes()));
  if (offset_ + x.size(0) > inputs_.size(0))
    throw UsageError("step linear: more rows than the " + std::to_string(inputs_.size(0)) + " announced");
  auto out = DeferredLinear::apply(x, weight_, inputs_, grads_, used_, transposed_, offset_, first_);
  offset_ += x.size(0);
  used_.data_ptr<int64_t>()[0] = offset_;
  first_ = false;
  weight_ = out[1];
  return out[0];
}

}  // namespace satcap
