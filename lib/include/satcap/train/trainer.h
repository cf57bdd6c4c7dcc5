// The training loop: a batch generator (batches.h), a training step (step.h), a schedule
// (schedule.h) and checkpoints (checkpoint.h), with validation by real decoding.
//
// Training the decoder on a prepared feature store (the encoder stays frozen: features are read,
// never re-encoded), or with --fine-tune-encoder on the images, training the encoder's last blocks
// too (features computed at each step; the rest of the encoder stays frozen). Adam with gradient
// clipping, learning-rate decay and early stopping on a validation BLEU-4 computed from real
// decoding (greedy or beam search, not teacher forcing), atomic checkpoints that resume
// bit-for-bit, a JSONL log, a progress bar and a PNG of the curves.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "satcap/model/decoder.h"
#include "satcap/runtime/precision.h"
#include "satcap/train/step.h"
#include "satcap/train/train_options.h"
#include "satcap/train/training_data.h"

namespace satcap {

class Communicator;
class Vocabulary;

// What happened, also written into the bundle's config.json.
struct TrainSummary {
  int64_t steps = 0;               // optimizer steps done in total (over resumes)
  int epochs_completed = 0;
  double best_bleu4 = -1;          // best validation BLEU-4 (-1 = never validated)
  int best_epoch = 0;
  std::map<std::string, double> best_scores;  // all validation scores of the best epoch
  double final_lr = 0;
  double seconds = 0;              // wall time of this run (excluding earlier runs before a resume)
  double steps_per_second = 0;
  bool stopped_early = false;
  int processes = 1;               // data-parallel processes of this run
};

// A new decoder's options from the training options and the data (vocabulary size V, feature
// dim D, regions n).
DecoderOptions decoder_options_for(const TrainOptions& options, int vocab_size, int feature_dim, int regions);

// What the loop calls back.
struct TrainHooks {
  // After a validation that improved BLEU-4 (the decoder in eval mode): keep this model.
  std::function<void(Decoder& decoder, const TrainSummary& summary)> on_best;
  // At the end when no validation ever ran (no validation images, or max_steps before an epoch
  // ended): keep the final model.
  std::function<void(Decoder& decoder, const TrainSummary& summary)> on_final;
};

// The training loop, on features. Trains `decoder` in place on `device`, writing into `out_dir`:
//   checkpoint.pt     every options.checkpoint_every steps and at each epoch's end (atomically):
//                     weights, Adam's state, the RNG state, the data position, the best score
//                     (fine-tuning: also the encoder's trainable tensors and their Adam state);
//   train_log.jsonl   one JSON object per line: "train" (loss parts, lr, rate), "val" (scores),
//                     "lr_decay", "checkpoint", "stopped", "done" records;
//   curves.png        loss and BLEU curves, redrawn after each validation and at the end.
// With options.resume the run continues from out_dir/checkpoint.pt: same data order, same random
// state, so k steps + resume + k steps gives the same weights as 2k steps.
// A non-finite loss (or SIGINT/SIGTERM) throws TrainingStopped after logging it; the last good
// checkpoint is left as it was (an interruption writes one first).
//
// With `comm` (satcap/dist/communicator.h), this process is one of a data-parallel run: every
// process calls this with the same data and options, and they train one model together.
// options.batch_size is the global batch, each process trains on its part of it
// (satcap/train/batches.h) and the step sums the parts (satcap/train/step.h), so the weights are
// those of one process on the same batches (up to rounding). Every process starts from rank 0's
// weights, and on --resume loads the checkpoint rank 0 read, whatever number of processes wrote
// it. Rank 0 alone writes into out_dir and runs the hooks; validation decoding is split across the
// processes; what decides the schedule (stop signals, non-finite losses, validation scores) is the
// same on every process. At each checkpoint the replicas are checked to be identical (their
// hashes are logged).
TrainSummary train_decoder(Decoder& decoder, const TrainingData& data, const Vocabulary& vocab,
                           const TrainOptions& options, const std::filesystem::path& out_dir,
                           const TrainHooks& hooks = {}, c10::Device device = c10::Device(c10::kCPU),
                           bool quiet = false, Communicator* comm = nullptr);

// Decodes validation images with greedy (beam 1) or beam search and scores them: the keys of
// metrics.h ("BLEU-1".."BLEU-4", "ROUGE-L", "CIDEr"). `captions`, if given, receives id -> caption.
// With `comm`, every process of the run calls it: each decodes a share of the images, and each
// gets all the captions and rank 0's scores.
std::map<std::string, double> validate_decoder(Decoder& decoder, const TrainingData& data, const Vocabulary& vocab,
                                               const TrainOptions& options, c10::Device device,
                                               std::map<std::string, std::string>* captions = nullptr,
                                               Communicator* comm = nullptr);

}  // namespace satcap
