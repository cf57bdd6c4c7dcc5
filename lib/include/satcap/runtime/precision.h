// Mixed precision for training and captioning: the precision the matrix products and convolutions
// of a training step (or of the encoder and the beam search) run in, under LibTorch's autocast
// (weights and activations cast to bfloat16 or float16 for those operations; on CUDA autocast's
// own lists keep softmax, the losses and reductions in float32, and the decoder computes its
// softmaxes in float32 on every device), and the dynamic loss scaling float16 needs so that small
// gradients do not underflow.
//
// Parameters, gradients and Adam's state stay float32 in every precision; checkpoints and bundles
// do not depend on it. satcap's hand-written CPU kernels take float32 only, so a step under
// autocast on the CPU runs LibTorch's reference operations (correct, and slower on CPUs without
// bfloat16 matrix units); the precision is meant for CUDA.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

namespace satcap {

enum class Precision {
  fp32,  // everything float32 (the default)
  bf16,  // autocast to bfloat16: float32's range, no loss scaling (CUDA, Ampere and later; CPU)
  fp16,  // autocast to float16 with dynamic loss scaling (CUDA only)
};

// "fp32", "bf16", "fp16" -> Precision; throws UsageError naming `option` otherwise.
Precision parse_precision(const std::string& name, const std::string& option = "--precision");
const char* precision_name(Precision precision);

// Throws UsageError when `precision` cannot run on `device`: fp16 on the CPU (LibTorch's CPU
// autocast has bfloat16 only).
void check_precision(Precision precision, const c10::Device& device);

// Autocast on for `device`'s type, with the precision's dtype, while the scope lives (fp32: does
// nothing). Leaving the outermost scope drops autocast's cache of cast weights, so the next step
// casts the updated weights again. Run the forward and the loss inside, the backward outside (as
// PyTorch's autocast recommends). Not copyable; one thread.
class AutocastScope {
 public:
  AutocastScope(Precision precision, const c10::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType device_type_ = c10::DeviceType::CPU;
  bool was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

// Dynamic loss scaling (PyTorch's GradScaler, same defaults): the loss is multiplied by the scale
// before the backward; the gradients are divided by it before clipping and the update. A step
// whose gradients hold an inf or NaN is skipped and the scale halved; after `growth_interval`
// steps without one, the scale doubles. Disabled (fp32, bf16): scale 1, every step taken.
class LossScaler {
 public:
  explicit LossScaler(bool enabled, double initial_scale = 65536.0, int growth_interval = 2000);

  bool enabled() const { return enabled_; }
  double scale() const { return scale_; }
  // loss * scale (the loss itself when disabled).
  at::Tensor scaled(const at::Tensor& loss) const;
  // Divides every defined gradient of `parameters` by the scale and says whether all of them are
  // finite; when not, the scale is backed off and the caller skips the update. Then counts the
  // step towards growth. Disabled: true, gradients untouched.
  bool unscale_and_update(const std::vector<at::Tensor>& parameters);
  // Steps skipped so far (gradients not finite).
  int64_t skipped() const { return skipped_; }
  // The state a checkpoint keeps: scale and the good steps since the last change.
  int64_t good_steps() const { return good_steps_; }
  void restore(double scale, int64_t good_steps);

 private:
  bool enabled_ = false;
  double scale_ = 1.0;
  int growth_interval_ = 2000;
  int64_t good_steps_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace satcap
