// When the training loop logs, checkpoints and validates, when it stops, and what a validation
// decides: keep the model when BLEU-4 improved, multiply the learning rates by lr_decay after
// lr_decay_patience validations without improvement, stop after early_stop_patience (Marian keeps
// this in its Scheduler). It reads and updates TrainingProgress only; the loop acts on the verdict.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "satcap/train/checkpoint.h"
#include "satcap/train/train_options.h"

namespace satcap {

class TrainingSchedule {
 public:
  TrainingSchedule(const TrainOptions& options, int64_t batches_per_epoch);

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  // Optimizer steps of the whole run: all epochs, or max_steps when smaller.
  int64_t total_steps() const;
  // Whether another step may run (max_steps not reached).
  bool step_allowed(const TrainingProgress& p) const;
  // Whether the step after the next one may run (for prefetching the next batch's images).
  bool next_step_allowed(const TrainingProgress& p) const;
  bool epoch_finished(const TrainingProgress& p) const { return p.batch >= batches_per_epoch_; }
  bool training_finished(const TrainingProgress& p) const;
  // After a step: a train record is due (every log_every steps and at the epoch's end).
  bool log_due(const TrainingProgress& p) const;
  // After a step: a checkpoint is due (every checkpoint_every steps; the epoch's end writes its own).
  bool checkpoint_due(const TrainingProgress& p) const;
  // At the end of epoch p.epoch: validation is due (every val_every epochs).
  bool validation_due(const TrainingProgress& p) const;

  struct Verdict {
    bool improved = false;     // a better BLEU-4: keep this model
    bool lr_decayed = false;   // the learning rates were multiplied by lr_decay
    double lr_before = 0;
    bool early_stop = false;   // no better BLEU-4 for early_stop_patience validations
  };
  // Records a validation of the epoch p.epoch in `p`: the best score, the patience counters, the
  // learning rates (the encoder's decays with the decoder's when `fine_tuning`), early stopping.
  Verdict after_validation(TrainingProgress& p, const std::map<std::string, double>& scores, bool fine_tuning) const;

 private:
  const TrainOptions& options_;
  int64_t batches_per_epoch_;
};

}  // namespace satcap
