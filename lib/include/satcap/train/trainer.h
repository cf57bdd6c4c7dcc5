// Training the decoder on a prepared feature store (the encoder stays frozen: features are read,
// never re-encoded), or with --fine-tune-encoder on the images, training the encoder's last blocks
// too (features computed at each step; the rest of the encoder stays frozen). Adam with gradient clipping, learning-rate decay and early stopping on a
// validation BLEU-4 computed from real decoding (greedy or beam search, not teacher forcing),
// atomic checkpoints that resume bit-for-bit, a JSONL log, a progress bar and a PNG of the curves.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "satcap/model/decoder.h"
#include "satcap/runtime/precision.h"

namespace satcap {

class Encoder;
class Vocabulary;

struct TrainOptions {
  // Passes over the training captions.
  int epochs = 20;
  // Captions per minibatch (the paper: 64).
  int batch_size = 64;
  // Adam's learning rate (the common reimplementation: 4e-4 for the decoder).
  double lr = 4e-4;
  // Gradients are clipped to this global L2 norm; 0 = no clipping.
  double grad_clip = 5.0;
  // The learning rate is multiplied by lr_decay after lr_decay_patience validations without improvement.
  double lr_decay = 0.8;
  // Validations without a better BLEU-4 before the learning rate decays (0 = never decay).
  int lr_decay_patience = 8;
  // Validations without a better BLEU-4 before training stops (0 = never stop early).
  int early_stop_patience = 20;
  // The decoder's shape and regularisation (copied into DecoderOptions for a new model; a resumed
  // model keeps its own). Attention: "soft" (deterministic) or "hard" (stochastic, REINFORCE).
  std::string attention = "soft";
  // Word embedding size m.
  int embed_dim = 512;
  // Attention MLP width.
  int attention_dim = 512;
  // LSTM width H.
  int hidden_dim = 512;
  // Dropout on h_t and the deep-output sum (the original code: 0.5).
  double dropout = 0.5;
  // lambda of the doubly stochastic regularisation lambda * sum_i (1 - sum_t alpha_ti)^2, per
  // caption (eq. 14 as written). Off by default: with n = 196 regions and about ten words it cannot
  // be satisfied and pulls attention towards uniform; on the scenes, 0.2 left hard attention
  // pointing at the named object in 28.7% of cases against 82.3% at 0 (models/README.md). The
  // paper's COCO setting is 1 (datasets/coco_paper_training.json); the original code's per-caption
  // weight is alpha_c * batch / n (its mean over regions of a sum over the batch).
  double alpha_c = 0.0;
  // Write a checkpoint every this many optimizer steps (0 = only at the end of each epoch).
  int checkpoint_every = 1000;
  // Write a train-loss log record every this many steps.
  int log_every = 50;
  // Validate (decode + score) every this many epochs.
  int val_every = 1;
  // Beam size of the validation decoding (1 = greedy).
  int val_beam_size = 1;
  // Validate on at most this many validation images (0 = all).
  int val_max_images = 1000;
  // Longest caption decoded at validation (words, without <start>/<end>).
  int max_caption_length = 50;
  // Training captions longer than this many words are truncated (0 = keep all).
  int max_train_length = 50;
  // Stop after this many optimizer steps in total (0 = run all epochs); for tests and smoke runs.
  int64_t max_steps = 0;
  // Seed of the shuffling, the weights' initialisation, dropout and hard-attention sampling.
  uint64_t seed = 1;
  // Continue from <out>/checkpoint.pt with the same data order and random state.
  bool resume = false;
  // Also train the encoder's last blocks, from the images (decoded and encoded at each step; no
  // feature store is used). Much slower per step than training on prepared features.
  bool fine_tune_encoder = false;
  // With fine_tune_encoder: how many of the encoder's last blocks up to the feature layer are
  // trained (mobilenet_v2: 2 = block_12 and block_13's expansion; inception_v3: 2 = mixed6, mixed7).
  int fine_tune_blocks = 2;
  // With fine_tune_encoder: Adam's learning rate for the encoder's blocks (the common
  // reimplementation: 1e-4); it decays with the decoder's.
  double encoder_lr = 1e-4;
  // Mixed precision of the training step (satcap/runtime/precision.h): "fp32", "bf16" (autocast to
  // bfloat16) or "fp16" (autocast to float16 with dynamic loss scaling; CUDA only). Parameters,
  // Adam's state and checkpoints stay float32; validation decodes in float32.
  std::string precision = "fp32";
};

// Throws UsageError naming the option ("--batch must be at least 1 (got 0)").
void validate(const TrainOptions& options);

// TrainOptions <-> JSON, keys named as the fields ("batch_size"). from_json applies only the keys
// present over `base` and refuses unknown keys or values of the wrong type (UsageError naming the
// key and `source`, e.g. the config file).
nlohmann::json to_json(const TrainOptions& options);
TrainOptions train_options_from_json(const nlohmann::json& json, const TrainOptions& base = {},
                                     const std::string& source = "config");

// The precedence rule: defaults < config file < command line. `command_line` holds the values
// parsed from the command line, `given` the JSON keys of the options the user actually typed
// there; `config` (may be null) is the config file's JSON.
TrainOptions resolve_train_options(const nlohmann::json* config, const TrainOptions& command_line,
                                   const std::set<std::string>& given, const std::string& config_source = "config");

// ---------------------------------------------------------------------------------------------
// The training loop on features: what it trains on.

// One training caption, as TrainingCaptions hands it out (a view: valid while the store lives and
// is not added to).
struct TrainingCaption {
  int64_t feature_row = 0;          // row of the image in the feature source
  const int32_t* tokens = nullptr;  // <start> w1 .. wn <end>, vocabulary ids
  std::size_t length = 0;           // number of tokens
};

// The training captions stored flat: one array of every caption's tokens (32-bit ids) and one
// offset and feature row per caption, about 72 bytes for a caption of COCO's mean length, against
// about 160 as a vector of 64-bit ids each (for the 566,747 captions of COCO's Karpathy train
// split: about 41 MB instead of 90).
class TrainingCaptions {
 public:
  // Throws std::invalid_argument for an id outside [0, 2^31).
  void add(int64_t feature_row, const std::vector<int64_t>& tokens);
  std::size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }
  TrainingCaption operator[](std::size_t i) const {
    return {rows_[i], tokens_.data() + starts_[i], starts_[i + 1] - starts_[i]};
  }
  // Gives back the spare capacity the vectors grew into (called once they are complete).
  void shrink_to_fit();

 private:
  std::vector<int64_t> rows_;
  std::vector<std::size_t> starts_{0};  // caption i's tokens: tokens_[starts_[i] .. starts_[i + 1])
  std::vector<int32_t> tokens_;
};

struct ValidationImage {
  std::string id;                       // image id (as the metrics key it)
  int64_t feature_row = 0;
  std::vector<std::string> references;  // reference captions, raw text
};

struct TrainingData {
  TrainingCaptions train;
  std::vector<ValidationImage> val;
  // Gathers region features for rows of the feature source: [B, n, D] float.
  std::function<at::Tensor(const std::vector<int64_t>& rows)> gather;
  // Fine-tuning (set both, gather is then unused): the encoder whose trainable parameters are
  // trained with the decoder (its own Adam, TrainOptions::encoder_lr), and the network's input for
  // rows of the image list: decoded, preprocessed images [B, 3, H, W]. Called on a worker thread
  // (the next batch is loaded while this one trains); features are encoder->forward(images(rows)).
  Encoder* encoder = nullptr;
  std::function<at::Tensor(const std::vector<int64_t>& rows)> images;
};

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

// One training step's loss: the decoder's teacher-forced forward and its loss under `precision`'s
// autocast (satcap/runtime/precision.h), the scope closed before returning, so that the caller's backward
// runs outside it. What satcap train and the benchmark's training step both run.
LossTerms training_loss(Decoder& decoder, const at::Tensor& features, const at::Tensor& captions,
                        const at::Tensor& lengths, Precision precision, c10::Device device);

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
TrainSummary train_decoder(Decoder& decoder, const TrainingData& data, const Vocabulary& vocab,
                           const TrainOptions& options, const std::filesystem::path& out_dir,
                           const TrainHooks& hooks = {}, c10::Device device = c10::Device(c10::kCPU),
                           bool quiet = false);

// Decodes validation images with greedy (beam 1) or beam search and scores them: the keys of
// metrics.h ("BLEU-1".."BLEU-4", "ROUGE-L", "CIDEr"). `captions`, if given, receives id -> caption.
std::map<std::string, double> validate_decoder(Decoder& decoder, const TrainingData& data, const Vocabulary& vocab,
                                               const TrainOptions& options, c10::Device device,
                                               std::map<std::string, std::string>* captions = nullptr);

// ---------------------------------------------------------------------------------------------
// `satcap train`: from a dataset to a model bundle.

struct TrainCommandOptions {
  // The dataset: a COCO captions file, a Karpathy dataset.json, a Flickr8k token file, or a folder.
  std::string data;
  // Output folder: model/ (the best model bundle), checkpoint.pt, train_log.jsonl, curves.png,
  // config.effective.json, and features/ when no feature store is given.
  std::string out;
  // A prepared feature store (satcap prepare); "" = prepare one with `encoder` into <out>/features.
  std::string features;
  // The encoder used to prepare features when none are given (or fine-tuned, with
  // TrainOptions::fine_tune_encoder).
  std::string encoder = "mobilenet_v2";
  // Vocabulary: words seen fewer times in the training captions become <unk>.
  int min_word_count = 5;
  // After training, decode the "test" split with the best model and write <out>/test_scores.json.
  bool eval_test = true;
};

// Loads the dataset, builds (or on resume reloads) the vocabulary, opens or prepares the feature
// store, trains, writes the best model bundle to <out>/model and (eval_test) scores it on the test split. `options` is the effective
// configuration (also written to <out>/config.effective.json).
TrainSummary run_training(const TrainCommandOptions& command, const TrainOptions& options,
                          c10::Device device = c10::Device(c10::kCPU), bool quiet = false);

}  // namespace satcap
