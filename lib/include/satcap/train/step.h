// One training step, the model update: the teacher-forced forward and the loss under the step's
// precision (the encoder's forward too when it is fine-tuned), the backward, float16's loss
// scaling, gradient clipping and Adam. What `satcap train` and the benchmark's training step run.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstddef>
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

class Communicator;
class Encoder;
class GradientSync;

// The decoder's teacher-forced forward and its loss under `precision`'s autocast
// (satcap/runtime/precision.h), the scope closed before returning, so that the caller's backward
// runs outside it. `slice`: the batch is a part of a global batch (data-parallel training).
LossTerms training_loss(Decoder& decoder, const at::Tensor& features, const at::Tensor& captions,
                        const at::Tensor& lengths, Precision precision, c10::Device device,
                        const BatchSlice* slice = nullptr);

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

  // Data-parallel training: each process runs the step on its part of the global batch
  // (TrainingBatch::slice), and the step makes it the global batch's step. The loss is divided by
  // the global token count; its parts are summed over the processes (the logged loss, the
  // non-finite check every process agrees on, the REINFORCE baseline's global mean NLL); the
  // gradients are summed over the processes during and after the backward, before they are
  // unscaled and clipped (satcap/dist/gradient_sync.h). Call before the first step, with the
  // models on their device; `comm` must outlive the step.
  void set_data_parallel(Communicator& comm, std::size_t bucket_bytes);
  // The gradient buckets (null in one process).
  const GradientSync* gradient_sync() const { return sync_.get(); }

  torch::optim::Adam& optimizer() { return *optimizer_; }
  Decoder& decoder() { return decoder_; }
  torch::optim::Adam* encoder_optimizer() { return encoder_optimizer_.get(); }
  LossScaler& scaler() { return scaler_; }
  // Every parameter trained: the decoder's, then the fine-tuned encoder's.
  std::vector<at::Tensor> parameters() const;
  void set_learning_rates(double lr, double encoder_lr);

 private:
  // Data-parallel training: the global batch's loss parts in `terms` (each process's part is
  // already divided by the global token count, so the parts add up), and the REINFORCE baseline's
  // update from the global sums.
  void sum_loss_terms(LossTerms& terms, const TrainingBatch& batch);

  Decoder& decoder_;
  Encoder* encoder_;
  double grad_clip_;
  Precision precision_;
  c10::Device device_;
  std::vector<at::Tensor> decoder_params_, encoder_params_;
  std::unique_ptr<torch::optim::Adam> optimizer_, encoder_optimizer_;
  LossScaler scaler_;
  Communicator* comm_ = nullptr;
  std::unique_ptr<GradientSync> sync_;
};

}  // namespace satcap
