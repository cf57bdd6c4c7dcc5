// float16's dynamic loss scaling for mixed-precision training (satcap/runtime/precision.h), so that
// small gradients do not underflow.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace satcap {

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
