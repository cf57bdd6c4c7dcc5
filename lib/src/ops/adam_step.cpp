#include "satcap/ops/adam_step.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/optim/adam.h>

#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>

namespace satcap {

namespace {

bool fusable(const torch::optim::Adam& optimizer) {
  for (const auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamOptions&>(group.options());
    if (o.amsgrad() || o.weight_decay() != 0) return false;
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto& g = p.grad();
      if (!p.device().is_cpu() || p.scalar_type() != at::kFloat || !p.is_contiguous() || g.is_sparse() ||
          g.scalar_type() != at::kFloat || !g.is_contiguous() || g.sizes() != p.sizes())
        return false;
    }
  }
  return true;
}

// The key Adam keeps a parameter's state under: its TensorImpl's address, printed (LibTorch 1.13's
// c10::guts::to_string), or the address itself where a version keys the map by pointer.
template <typename Map>
typename Map::key_type state_key(const Map&, const at::Tensor& p) {
  using Key = typename Map::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

}  // namespace

torch::optim::AdamParamState* adam_state(torch::optim::Adam& optimizer, const at::Tensor& parameter) {
  auto& state = optimizer.state();
  auto it = state.find(state_key(state, parameter));
  return it == state.end() ? nullptr : static_cast<torch::optim::AdamParamState*>(it->second.get());
}

void adam_step(torch::optim::Adam& optimizer) {
  if (!fusable(optimizer)) {
    optimizer.step();
    return;
  }
  at::NoGradGuard no_grad;
  auto& state = optimizer.state();
  for (auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      // The state as Adam::step keys and creates it, so that either can take the next step.
      const auto key = state_key(state, p);
      auto it = state.find(key);
      if (it == state.end()) {
        auto s = std::make_unique<torch::optim::AdamParamState>();
        s->step(0);
        s->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        s->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        it = state.emplace(key, std::move(s)).first;
      }
      auto& s = static_cast<torch::optim::AdamParamState&>(*it->second);
      s.step(s.step() + 1);
      if (!s.exp_avg().is_contiguous()) s.exp_avg(s.exp_avg().contiguous());
      if (!s.exp_avg_sq().is_contiguous()) s.exp_avg_sq(s.exp_avg_sq().contiguous());
      const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
      const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(s.step()));
      const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(s.step()));
      // Adam::step's arithmetic, in its order and in float (its scalars are cast the same way):
      //   m = m * b1 + (1 - b1) * g;  v = v * b2 + (1 - b2) * g * g
      //   p = p - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
      const float b1 = static_cast<float>(beta1), one_b1 = static_cast<float>(1 - beta1);
      const float b2 = static_cast<float>(beta2), one_b2 = static_cast<float>(1 - beta2);
      const float root_bc2 = static_cast<float>(std::sqrt(bias_correction2)), eps = static_cast<float>(o.eps());
      const float step_size = static_cast<float>(-(o.lr() / bias_correction1));
      float* w = p.data_ptr<float>();
      const float* g = p.grad().data_ptr<float>();
      float* m = s.exp_avg().data_ptr<float>();
      float* v = s.exp_avg_sq().data_ptr<float>();
      at::parallel_for(0, p.numel(), 16384, [&](int64_t begin, int64_t end) {
#pragma omp simd
        for (int64_t i = begin; i < end; ++i) {
          const float gi = g[i];
          const float mi = m[i] * b1 + one_b1 * gi;
          const float vi = v[i] * b2 + one_b2 * gi * gi;
          m[i] = mi;
          v[i] = vi;
          w[i] = w[i] + step_size * (mi / (std::sqrt(vi) / root_bc2 + eps));
        }
      });
    }
  }
}

void clear_grads(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) p.mutable_grad().reset();
}

}  // namespace satcap
