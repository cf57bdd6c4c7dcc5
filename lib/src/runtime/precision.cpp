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
bool autocast_on(c10::DeviceType t) { return at::autocast::is_autocast_enabled(t); }
void set_autocast_enabled(c10::DeviceType t, bool on) { at::autocast::set_autocast_enabled(t, on); }
c10::ScalarType autocast_dtype(c10::DeviceType t) { return at::autocast::get_autocast_dtype(t); }
void set_autocast_dtype(c10::DeviceType t, c10::ScalarType dtype) { at::autocast::set_autocast_dtype(t, dtype); }
#else
bool autocast_on(c10::DeviceType t) {
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

bool autocast_enabled(c10::DeviceType type) { return autocast_on(type); }

Precision parse_precision(const std::string& name, const std::string& option) {
  return parse_enum<Precision>(name, option);
}

std::string precision_name(Precision precision) { return enum_name(precision); }

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

}  // namespace satcap
