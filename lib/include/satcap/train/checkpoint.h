// Training checkpoints: everything a run needs to continue bit-for-bit (Marian keeps the same
// parts): the decoder's weights, Adam's state, the random state, the progress through the data and
// the schedule (TrainingProgress), and when fine-tuning the encoder's trainable tensors and their
// Adam state. One LibTorch archive, written atomically (satcap/runtime/atomic_file.h).
//
// Format 1: a frozen encoder; 2: with the fine-tuned encoder's tensors; 3: a decoder with a linear
// initial state (see decoder_options_format). A checkpoint is written in the oldest that holds it.
#pragma once

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "satcap/model/decoder.h"
#include "satcap/train/step.h"
#include "satcap/train/train_options.h"
#include "satcap/train/training_data.h"

namespace satcap {

// The newest checkpoint format read and written.
constexpr int kCheckpointFormatVersion = 3;

// Where a run is: in the data, in the schedule, and float16's loss scale.
struct TrainingProgress {
  int epoch = 0;          // current epoch (0-based)
  int64_t batch = 0;      // next batch within the epoch
  int64_t step = 0;       // optimizer steps done
  double lr = 0;
  double encoder_lr = 0;  // fine-tuning: the encoder's learning rate
  double best_bleu4 = -1;
  int best_epoch = 0;
  std::map<std::string, double> best_scores;
  int since_best = 0;     // validations without improvement
  bool early_stopped = false;
  int epochs_completed = 0;
  // --precision fp16: the loss scaler's state (satcap/runtime/loss_scaler.h) and the steps it skipped.
  double loss_scale = 0;  // 0 = not set (a new run, or a checkpoint without it)
  int64_t loss_scale_good_steps = 0;
  int64_t skipped_steps = 0;

  nlohmann::json to_json() const;
  // Throws ModelError naming `source` for a malformed record.
  static TrainingProgress from_json(const nlohmann::json& j, const std::string& source);
};

// Writes the checkpoint at `path` atomically (OutputError when it cannot be written).
void save_checkpoint(const std::filesystem::path& path, Decoder& decoder, TrainingStep& step,
                     const TrainingProgress& progress, const TrainingData& data, const TrainOptions& options,
                     c10::Device device);

// Reads the checkpoint at `path` into the decoder, the step's optimizers (and the fine-tuned
// encoder), restores the random state and returns the progress. Throws UsageError when it was
// written for other data or options (another dataset, batch size, seed, or fine-tuning setup),
// ModelError when it is unreadable or too new.
TrainingProgress load_checkpoint(const std::filesystem::path& path, Decoder& decoder, TrainingStep& step,
                                 const TrainingData& data, const TrainOptions& options, c10::Device device);

// The meta record of a checkpoint (what run_training reads first: the decoder options of a resumed
// model). UsageError when `path` is missing, ModelError when it is not a satcap checkpoint or too new.
nlohmann::json read_checkpoint_meta(const std::filesystem::path& path);

// Data-parallel training: rank 0 alone reads the checkpoint file (UsageError when `path` is missing,
// InputError when it cannot be read) and sends its bytes to the others, which load it from memory,
// so the output folder need not be shared between machines. `name` names it in messages.
std::string read_checkpoint_bytes(const std::filesystem::path& path);
TrainingProgress load_checkpoint_bytes(const std::string& bytes, const std::string& name, Decoder& decoder,
                                       TrainingStep& step, const TrainingData& data, const TrainOptions& options,
                                       c10::Device device);
nlohmann::json read_checkpoint_meta_bytes(const std::string& bytes, const std::string& name);

}  // namespace satcap
