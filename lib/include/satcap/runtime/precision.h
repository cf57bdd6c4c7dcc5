// Mixed precision for training and captioning: the precision the matrix products and convolutions
// of a training step (or of the encoder and the beam search) run in, under LibTorch's autocast
// (weights and activations cast to bfloat16 or float16 for those operations; on CUDA autocast's
// own lists keep softmax, the losses and reductions in float32, and the decoder computes its
// softmaxes in float32 on every device). float16's loss scaling is satcap/runtime/loss_scaler.h.
//
// Parameters, gradients and Adam's state stay float32 in every precision; checkpoints and bundles
// do not depend on it. satcap's hand-written CPU kernels take float32 only, so a step under
// autocast on the CPU runs LibTorch's reference operations (correct, and slower on CPUs without
// bfloat16 matrix units); the precision is meant for CUDA.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>
#include <utility>
#include <vector>

#include "satcap/runtime/option_table.h"

namespace satcap {

enum class Precision {
  fp32,  // everything float32 (the default)
  bf16,  // autocast to bfloat16: float32's range, no loss scaling (CUDA, Ampere and later; CPU)
  fp16,  // autocast to float16 with dynamic loss scaling (CUDA only)
};

template <>
struct EnumNames<Precision> {
  static const std::vector<std::pair<std::string, Precision>>& table() {
    static const std::vector<std::pair<std::string, Precision>> t{
        {"fp32", Precision::fp32}, {"bf16", Precision::bf16}, {"fp16", Precision::fp16}};
    return t;
  }
};

// "fp32", "bf16", "fp16" -> Precision; throws UsageError naming `option` otherwise.
Precision parse_precision(const std::string& name, const std::string& option = "--precision");
std::string precision_name(Precision precision);

// Throws UsageError when `precision` cannot run on `device`: fp16 on the CPU (LibTorch's CPU
// autocast has bfloat16 only).
void check_precision(Precision precision, const c10::Device& device);

// Whether LibTorch's autocast is on for `type`'s devices now.
bool autocast_enabled(c10::DeviceType type);

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

}  // namespace satcap
