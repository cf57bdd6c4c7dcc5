#include "satcap/train/schedule.h"

#include <algorithm>

namespace satcap {

TrainingSchedule::TrainingSchedule(const TrainOptions& options, int64_t batches_per_epoch)
    : options_(options), batches_per_epoch_(batches_per_epoch) {}

int64_t TrainingSchedule::total_steps() const {
  int64_t total = batches_per_epoch_ * options_.epochs;
  if (options_.max_steps > 0) total = std::min<int64_t>(total, options_.max_steps);
  return total;
}

bool TrainingSchedule::step_allowed(const TrainingProgress& p) const {
  return options_.max_steps == 0 || p.step < options_.max_steps;
}

bool TrainingSchedule::next_step_allowed(const TrainingProgress& p) const {
  return options_.max_steps == 0 || p.step + 1 < options_.max_steps;
}

bool TrainingSchedule::training_finished(const TrainingProgress& p) const {
  return p.epoch >= options_.epochs || p.early_stopped;
}

bool TrainingSchedule::log_due(const TrainingProgress& p) const {
  return p.step % options_.log_every == 0 || p.batch == batches_per_epoch_;
}

bool TrainingSchedule::checkpoint_due(const TrainingProgress& p) const {
  return options_.checkpoint_every > 0 && p.step % options_.checkpoint_every == 0 && p.batch < batches_per_epoch_;
}

bool TrainingSchedule::validation_due(const TrainingProgress& p) const { return (p.epoch + 1) % options_.val_every == 0; }

TrainingSchedule::Verdict TrainingSchedule::after_validation(TrainingProgress& p, const std::map<std::string, double>& scores,
                                                             bool fine_tuning) const {
  Verdict v;
  const auto it = scores.find("BLEU-4");
  const double bleu4 = it != scores.end() ? it->second : 0.0;
  if (bleu4 > p.best_bleu4) {
    v.improved = true;
    p.best_bleu4 = bleu4;
    p.best_epoch = p.epoch + 1;
    p.best_scores = scores;
    p.since_best = 0;
    return v;
  }
  ++p.since_best;
  if (options_.lr_decay_patience > 0 && p.since_best % options_.lr_decay_patience == 0 && options_.lr_decay < 1) {
    v.lr_decayed = true;
    v.lr_before = p.lr;
    p.lr *= options_.lr_decay;
    if (fine_tuning) p.encoder_lr *= options_.lr_decay;
  }
  if (options_.early_stop_patience > 0 && p.since_best >= options_.early_stop_patience) {
    v.early_stop = true;
    p.early_stopped = true;
  }
  return v;
}

}  // namespace satcap
