#include "satcap/runtime/precision.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cmath>

#include "satcap/runtime/error.h"

namespace satcap {

namespace {

// LibTorch 2.4 made autocast's switches per device type; before, CUDA and the CPU had their own.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(c10::DeviceType t) { return at::autocast::is_autocast_enabled(t); }
void set_autocast_enabled(c10::DeviceType t, bool on) { at::autocast::set_autocast_enabled(t, on); }
c10::ScalarType autocast_dtype(c10::DeviceType t) { return at::autocast::get_autocast_dtype(t); }
void set_autocast_dtype(c10::DeviceType t, c10::ScalarType dtype) { at::autocast::set_autocast_dtype(t, dtype); }
#else
bool autocast_enabled(c10::DeviceType t) {
  return t == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
void set_autocast_enabled(c10::DeviceType t, bool on) {
  if (t == c10::DeviceType::CUDA) at::autocast::set_enabled(on);
  else at::autocast::set_cpu_enabled(on);
}
c10::ScalarType autocast_dtype(c10::DeviceType t) {
  return t == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_autocast_dtype(c10::DeviceType t, c10::ScalarType dtype) {
  if (t == c10::DeviceType::CUDA) at::autocast::set_autocast_gpu_dtype(dtype);
  else at::autocast::set_autocast_cpu_dtype(dtype);
}
#endif

}  // namespace

Precision parse_precision(const std::string& name, const std::string& option) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  if (name == "fp16") return Precision::fp16;
  throw UsageError(option + " must be fp32, bf16 or fp16 (got '" + name + "')");
}

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::bf16: return "bf16";
    case Precision::fp16: return "fp16";
    case Precision::fp32: break;
  }
  return "fp32";
}

void check_precision(Precision precision, const c10::Device& device) {
  if (precision == Precision::fp16 && !device.is_cuda())
    throw UsageError("--precision fp16 needs --device cuda (LibTorch's CPU autocast has bfloat16 only: use bf16)");
  if (precision != Precision::fp32 && !device.is_cuda() && !device.is_cpu())
    throw UsageError(std::string("--precision ") + precision_name(precision) + " runs on cpu or cuda devices only");
}

AutocastScope::AutocastScope(Precision precision, const c10::Device& device) {
  if (precision == Precision::fp32) return;
  check_precision(precision, device);
  device_type_ = device.type();
  was_enabled_ = autocast_enabled(device_type_);
  was_dtype_ = autocast_dtype(device_type_);
  set_autocast_dtype(device_type_, precision == Precision::bf16 ? at::kBFloat16 : at::kHalf);
  set_autocast_enabled(device_type_, true);
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  // The outermost scope drops the cached casts of the weights (they change at every update).
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(device_type_, was_enabled_);
  set_autocast_dtype(device_type_, was_dtype_);
}

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
