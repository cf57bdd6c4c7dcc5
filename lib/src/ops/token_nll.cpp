#include "satcap/ops/token_nll.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <string>

#include "ops/cpu_kernels.h"
#include "ops/cpu/token_nll_kernels.h"
#include "satcap/runtime/error.h"

namespace satcap {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

using detail::grain_for;  // rows per parallel chunk, from the row width

struct FusedTokenNll : public torch::autograd::Function<FusedTokenNll> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& targets) {
    auto l = logits.contiguous();
    auto t = targets.contiguous();
    const int64_t N = l.size(0), V = l.size(1);
    auto lse = at::empty({N}, l.options());  // [N]  log sum_j exp(l[r, j])
    auto nll = at::empty({N}, l.options());  // [N]
    const kernels::TokenNllArgs a{l.data_ptr<float>(), t.data_ptr<int64_t>(), N, V};
    const auto& k = kernels::token_nll_kernels();
    float* lp = lse.data_ptr<float>();
    float* np = nll.data_ptr<float>();
    at::parallel_for(0, N, grain_for(V), [&](int64_t b, int64_t e) { k.forward(a, b, e, lp, np); });
    ctx->save_for_backward({l, t, lse});
    return nll;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor()};
    auto saved = ctx->get_saved_variables();
    const at::Tensor &l = saved[0], &t = saved[1], &lse = saved[2];
    auto g = grads[0].contiguous();  // [N]
    const int64_t N = l.size(0), V = l.size(1);
    auto dl = at::empty({N, V}, l.options());  // [N, V]
    const kernels::TokenNllArgs a{l.data_ptr<float>(), t.data_ptr<int64_t>(), N, V};
    const auto& k = kernels::token_nll_kernels();
    const float* lp = lse.data_ptr<float>();
    const float* gp = g.data_ptr<float>();
    float* dp = dl.data_ptr<float>();
    at::parallel_for(0, N, grain_for(V), [&](int64_t b, int64_t e) { k.backward(a, lp, gp, b, e, dp); });
    return {dl, at::Tensor()};
  }
};

}  // namespace

at::Tensor token_nll(const at::Tensor& logits, const at::Tensor& targets) {
  if (logits.dim() != 2 || targets.dim() != 1 || targets.size(0) != logits.size(0) || logits.size(1) < 1)
    throw UsageError("token_nll: logits " + c10::str(logits.sizes()) + " and targets " + c10::str(targets.sizes()) +
                     " do not fit [N, V] and [N]");
  auto t = targets.to(at::kLong);
  if (!detail::cpu_float({&logits}))  // gather checks the ids itself
    return -at::log_softmax(logits, 1, at::kFloat).gather(1, t.unsqueeze(1)).squeeze(1);  // float32 under autocast too
  if (t.numel() > 0) {
    const int64_t lo = t.min().item<int64_t>(), hi = t.max().item<int64_t>();
    if (lo < 0 || hi >= logits.size(1))
      throw UsageError("token_nll: target id " + std::to_string(lo < 0 ? lo : hi) + " is outside the " +
                       std::to_string(logits.size(1)) + " logits of a row");
  }
  return FusedTokenNll::apply(logits, t);
}

}  // namespace satcap
