// One training step, the model update: the teacher-forced forward and the loss under the step's
// precision (the encoder's forward too when it is fine-tuned), the backward, float16's loss
// scaling, gradient clipping and Adam. What `satcap train` and the benchmark's training step run.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <vector>

#include "satcap/model/decoder.h"
#include "satcap/runtime/loss_scaler.h"
#include "satcap/runtime/precision.h"
#include "satcap/train/batches.h"
#include "satcap/train/train_options.h"

namespace torch::optim {
class Adam;
}

namespace satcap {

class Encoder;

// The decoder's teacher-forced forward and its loss under `precision`'s autocast
// (satcap/runtime/precision.h), the scope closed before returning, so that the caller's backward
// runs outside it.
LossTerms training_loss(Decoder& decoder, const at::Tensor& features, const at::Tensor& captions,
                        const at::Tensor& lengths, Precision precision, c10::Device device);

class TrainingStep {
 public:
  enum class Outcome {
    updated,            // the weights were updated
    skipped,            // float16: the gradients overflowed; no update, the scale was halved
    loss_not_finite,    // the loss is NaN or infinite: nothing was done
    gradient_not_finite,  // the clipped gradient norm is not finite: no update
  };
  struct Result {
    Outcome outcome = Outcome::updated;
    double loss = 0;   // terms.total
    LossTerms terms;
  };

  // Adam (options.lr) over the decoder's parameters and, when `encoder` is fine-tuned (not null),
  // its own Adam (options.encoder_lr) over the encoder's trainable blocks. The models must already
  // be on `device`.
  TrainingStep(Decoder& decoder, Encoder* encoder, const TrainOptions& options, c10::Device device);
  ~TrainingStep();

  Result run(TrainingBatch& batch);

  // Called after the backward, before the gradients are unscaled and clipped: where data-parallel
  // training averages them across processes.
  void set_gradient_hook(std::function<void()> hook) { gradient_hook_ = std::move(hook); }

  torch::optim::Adam& optimizer() { return *optimizer_; }
  torch::optim::Adam* encoder_optimizer() { return encoder_optimizer_.get(); }
  LossScaler& scaler() { return scaler_; }
  // Every parameter trained: the decoder's, then the fine-tuned encoder's.
  std::vector<at::Tensor> parameters() const;
  void set_learning_rates(double lr, double encoder_lr);

 private:
  Decoder& decoder_;
  Encoder* encoder_;
  double grad_clip_;
  Precision precision_;
  c10::Device device_;
  std::vector<at::Tensor> decoder_params_, encoder_params_;
  std::unique_ptr<torch::optim::Adam> optimizer_, encoder_optimizer_;
  LossScaler scaler_;
  std::function<void()> gradient_hook_;
};

}  // namespace satcap
