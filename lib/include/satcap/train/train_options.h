// What `satcap train` is told: the optimiser, the schedule, the decoder of a new model, validation
// decoding and the run's bookkeeping, in one struct whose field table (satcap/runtime/option_table.h)
// gives the config-file keys, the flags and the help texts. Precedence: defaults < config file <
// command line. No torch here.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "satcap/decode/search_options.h"
#include "satcap/model/decoder_options.h"
#include "satcap/runtime/option_table.h"
#include "satcap/runtime/precision.h"

namespace satcap {

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
  // The decoder of a new model: its shape and regularisation. The fields set from the data
  // (vocabulary size, feature dimension, regions) are filled in when training starts; a resumed
  // run keeps the decoder its checkpoint holds.
  DecoderOptions decoder;
  // Write a checkpoint every this many optimizer steps (0 = only at the end of each epoch).
  int checkpoint_every = 1000;
  // Write a train-loss log record every this many steps.
  int log_every = 50;
  // Validate (decode + score) every this many epochs.
  int val_every = 1;
  // Validation decoding. Greedy: validation runs every epoch, and greedy search costs a third of
  // beam 3; the rest are SearchOptions' defaults.
  SearchOptions validation = greedy();
  // Validate on at most this many validation images (0 = all).
  int val_max_images = 1000;
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
  // Mixed precision of the training step (satcap/runtime/precision.h). Parameters, Adam's state and
  // checkpoints stay float32; validation decodes in float32.
  Precision precision = Precision::fp32;

  static SearchOptions greedy() {
    SearchOptions s;
    s.beam_size = 1;
    return s;
  }

  static constexpr auto fields() {
    using O = TrainOptions;
    return std::make_tuple(
        option("epochs", &O::epochs, "Passes over the training captions"),
        option("batch_size", &O::batch_size, "Captions per minibatch", "--batch"),
        option("lr", &O::lr, "Adam learning rate"),
        option("grad_clip", &O::grad_clip, "Clip gradients to this global L2 norm (0 = off)"),
        option("lr_decay", &O::lr_decay, "Learning rate factor after --lr-decay-patience bad validations"),
        option("lr_decay_patience", &O::lr_decay_patience,
               "Validations without a better BLEU-4 before the learning rate decays (0 = never)"),
        option("early_stop_patience", &O::early_stop_patience,
               "Validations without a better BLEU-4 before stopping (0 = never)"),
        option("decoder", &O::decoder, "The decoder of a new model", "--"),
        option("checkpoint_every", &O::checkpoint_every, "Checkpoint every N steps (0 = at epoch ends only)"),
        option("log_every", &O::log_every, "Log the training loss every N steps"),
        option("val_every", &O::val_every, "Validate every N epochs"),
        option("validation", &O::validation, "Validation decoding", "--val-"),
        option("val_max_images", &O::val_max_images, "Validate on at most N images (0 = all)"),
        option("max_train_length", &O::max_train_length, "Training captions are cut to this many words (0 = no limit)"),
        option("max_steps", &O::max_steps, "Stop after N optimizer steps in total (0 = all epochs)"),
        option("seed", &O::seed, "Seed of shuffling, initialisation, dropout and sampling"),
        option("resume", &O::resume, "Continue from <out>/checkpoint.pt"),
        option("fine_tune_encoder", &O::fine_tune_encoder,
               "Also train the encoder's last blocks (--fine-tune-blocks), from the images (no --features); the "
               "bundle then carries the tuned encoder weights"),
        option("fine_tune_blocks", &O::fine_tune_blocks,
               "With --fine-tune-encoder: the encoder's last N blocks up to the feature layer are trained "
               "(mobilenet_v2 2 = block_12 + block_13_expand; inception_v3 2 = mixed6 + mixed7)"),
        option("encoder_lr", &O::encoder_lr, "With --fine-tune-encoder: Adam learning rate of the encoder's blocks"),
        option("precision", &O::precision,
               "Mixed precision of the training step: fp32, bf16 (autocast to bfloat16; CUDA, or the CPU's slower "
               "reference path) or fp16 (autocast to float16 with loss scaling; CUDA only)"));
  }
};

// Throws UsageError naming the option by its flag ("--batch must be at least 1 (got 0)").
void validate(const TrainOptions& options);

// TrainOptions as JSON (config.effective.json): the keys of its field table, the decoder and the
// validation search as nested objects ("decoder": {"hidden_dim": 512, ...}).
nlohmann::json to_json(const TrainOptions& options);

// Applies the keys present in `json` (a config file, or the options typed on the command line) over
// `base`. Refuses unknown keys, values of the wrong type and the decoder's data fields (UsageError
// naming the key and `source`). Also reads the flat keys of configs written before the decoder and
// the validation search were nested: attention, embed_dim, attention_dim, hidden_dim, dropout,
// alpha_c (decoder.*), val_beam_size (validation.beam_size), max_caption_length
// (validation.max_length). A top-level "run" object (config.effective.json's record of the data,
// features and encoder a run used) is informative and skipped, so that file reads back as a config.
TrainOptions train_options_from_json(const nlohmann::json& json, const TrainOptions& base = {},
                                     const std::string& source = "config");

// What --resume continues with: the options the run was started with (`recorded`, from its
// checkpoint), except those given now (`given`: the config file and the command line, as JSON with
// TrainOptions' keys; null = every option of `now` counts as given) that differ from them:
//   applied, and listed in `applied` ("--epochs 30 (the run had 20)"), for the options a run may
//   change on the way (epochs, max_steps, log_every, checkpoint_every, val_every, val_max_images,
//   the validation search, lr_decay, lr_decay_patience, early_stop_patience, grad_clip);
//   refused for the others (the data order, the model, the optimiser and the precision):
//   UsageError naming each ("--batch 32 (the run has 64)") and what to do.
struct ResumedOptions {
  TrainOptions options;
  std::vector<std::string> applied;
};
ResumedOptions resume_options(const nlohmann::json& recorded, const TrainOptions& now, const nlohmann::json& given,
                              const std::string& checkpoint);

// The precedence rule: defaults < config file < command line. `config` (may be null) is the config
// file's JSON; `command_line` holds only the options the user typed, as JSON (the same keys).
TrainOptions resolve_train_options(const nlohmann::json* config, const nlohmann::json& command_line,
                                   const std::string& config_source = "config");

}  // namespace satcap
