#include "satcap/train/step.h"

#include <ATen/ATen.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "satcap/dist/communicator.h"
#include "satcap/dist/gradient_sync.h"
#include "satcap/model/encoder.h"
#include "satcap/ops/adam_step.h"
#include "satcap/runtime/error.h"

namespace satcap {

LossTerms training_loss(Decoder& decoder, const at::Tensor& features, const at::Tensor& captions,
                        const at::Tensor& lengths, Precision precision, c10::Device device, const BatchSlice* slice) {
  AutocastScope autocast(precision, device);  // the forward and the loss only, not the backward
  return decoder->loss(decoder->forward(features, captions, lengths, slice));
}

namespace {

void set_lr(torch::optim::Adam& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
}

}  // namespace

TrainingStep::TrainingStep(Decoder& decoder, Encoder* encoder, const TrainOptions& options, c10::Device device)
    : decoder_(decoder),
      encoder_(encoder),
      grad_clip_(options.grad_clip),
      precision_(options.precision),
      device_(device),
      decoder_params_(decoder->parameters()),
      scaler_(options.precision == Precision::fp16) {
  optimizer_ = std::make_unique<torch::optim::Adam>(decoder_params_, torch::optim::AdamOptions(options.lr));
  if (encoder_) {  // the encoder's trainable blocks get their own Adam (the rest stays frozen)
    encoder_params_ = encoder_->trainable_parameters();
    if (encoder_params_.empty())
      throw UsageError("--fine-tune-encoder: the encoder " + encoder_->identity() + " has no trainable parameters");
    encoder_optimizer_ = std::make_unique<torch::optim::Adam>(encoder_params_, torch::optim::AdamOptions(options.encoder_lr));
  }
}

TrainingStep::~TrainingStep() = default;

void TrainingStep::set_data_parallel(Communicator& comm, std::size_t bucket_bytes) {
  comm_ = &comm;
  sync_ = std::make_unique<GradientSync>(comm, parameters(), bucket_bytes);
}

std::vector<at::Tensor> TrainingStep::parameters() const {
  std::vector<at::Tensor> all = decoder_params_;  // every parameter whose gradient the loss scale multiplies
  all.insert(all.end(), encoder_params_.begin(), encoder_params_.end());
  return all;
}

void TrainingStep::set_learning_rates(double lr, double encoder_lr) {
  set_lr(*optimizer_, lr);
  if (encoder_optimizer_) set_lr(*encoder_optimizer_, encoder_lr);
}

void TrainingStep::sum_loss_terms(LossTerms& t, const TrainingBatch& batch) {
  if (!batch.slice) throw std::logic_error("TrainingStep: a data-parallel step needs the batch's place in the global batch");
  auto value = [](const at::Tensor& x) { return x.detach().to(at::kCPU, at::kFloat).reshape({}); };
  at::Tensor values = at::stack({value(t.total), value(t.nll), value(t.ds_reg), value(t.reinforce), value(t.entropy),
                                 value(t.caption_nll_sum)});
  comm_->sum(values);
  t.total = values[0];
  t.nll = values[1];
  t.ds_reg = values[2];
  t.reinforce = values[3];
  t.entropy = values[4];
  t.caption_nll_sum = values[5];
  t.tokens = at::scalar_tensor(static_cast<double>(batch.slice->tokens()), at::kFloat);
  if (decoder_->options().attention == AttentionKind::hard && decoder_->is_training()) {
    const auto captions = static_cast<double>(std::max<int64_t>(1, batch.slice->captions()));
    const auto& b = decoder_->baseline();
    decoder_->update_baseline(values[5].to(b.device()), at::scalar_tensor(captions, b.options()));
  }
}

TrainingStep::Result TrainingStep::run(TrainingBatch& batch) {
  if (encoder_) {  // the features of the batch's images, with autograd: [B, n, D]
    AutocastScope autocast(precision_, device_);  // the encoder's forward too
    at::Tensor h = encoder_->forward(batch.images.input.to(device_));  // [U, n, D]
    batch.features = h.index_select(0, batch.images.index.to(device_));
  }
  Result r;
  r.terms = training_loss(decoder_, batch.features, batch.captions, batch.lengths, precision_, device_,
                          batch.slice ? &*batch.slice : nullptr);
  at::Tensor objective = r.terms.total;  // this process's part of the loss, to backpropagate
  if (comm_) sum_loss_terms(r.terms, batch);
  r.loss = r.terms.total.item<double>();
  if (!std::isfinite(r.loss)) {  // the global loss: every process agrees
    r.outcome = Outcome::loss_not_finite;
    return r;
  }
  clear_grads(*optimizer_);  // no zero-filled gradients to add into (satcap/ops/adam_step.h)
  if (encoder_optimizer_) clear_grads(*encoder_optimizer_);
  if (sync_) sync_->before_backward();
  scaler_.scaled(objective).backward();
  if (sync_) sync_->after_backward();  // the gradients of the global loss, on every process
  // fp16: gradients back to their true size; a step whose gradients overflowed is skipped (the
  // batch is used up all the same) and the scale halved.
  if (!scaler_.unscale_and_update(parameters())) {
    r.outcome = Outcome::skipped;
    return r;
  }
  if (grad_clip_ > 0) {  // the decoder's and the encoder's gradients are clipped separately
    double norm = torch::nn::utils::clip_grad_norm_(decoder_params_, grad_clip_);
    if (encoder_optimizer_) norm += torch::nn::utils::clip_grad_norm_(encoder_params_, grad_clip_);
    if (!std::isfinite(norm)) {
      r.outcome = Outcome::gradient_not_finite;
      return r;
    }
  }
  adam_step(*optimizer_);  // Adam::step's update in one pass per parameter (satcap/ops/adam_step.h)
  if (encoder_optimizer_) adam_step(*encoder_optimizer_);
  return r;
}

}  // namespace satcap
