#include "satcap/runtime/loss_scaler.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "satcap/runtime/error.h"

namespace satcap {

LossScaler::LossScaler(bool enabled, double initial_scale, int growth_interval)
    : enabled_(enabled), scale_(enabled ? initial_scale : 1.0), growth_interval_(growth_interval) {
  if (enabled && !(std::isfinite(initial_scale) && initial_scale > 0))
    throw UsageError("loss scale must be a positive number (got " + std::to_string(initial_scale) + ")");
  if (growth_interval < 1) throw UsageError("loss scale growth interval must be at least 1");
}

at::Tensor LossScaler::scaled(const at::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

bool LossScaler::unscale_and_update(const std::vector<at::Tensor>& parameters) {
  if (!enabled_) return true;
  at::NoGradGuard no_grad;
  at::Tensor bad;  // [] bool: some gradient holds an inf or NaN (one device sync below, not one per tensor)
  for (const auto& p : parameters) {
    at::Tensor g = p.grad();
    if (!g.defined()) continue;
    g.mul_(1.0 / scale_);
    at::Tensor b = at::isfinite(g).logical_not().any();
    bad = bad.defined() ? bad.logical_or(b) : b;
  }
  const bool finite = !bad.defined() || !bad.item<bool>();
  if (finite) {
    if (++good_steps_ >= growth_interval_) {
      scale_ *= 2.0;
      good_steps_ = 0;
    }
  } else {
    scale_ *= 0.5;
    good_steps_ = 0;
    ++skipped_;
  }
  return finite;
}

void LossScaler::restore(double scale, int64_t good_steps) {
  if (!enabled_) return;
  if (std::isfinite(scale) && scale > 0) scale_ = scale;
  good_steps_ = good_steps >= 0 ? good_steps : 0;
}

}  // namespace satcap
