// `satcap train` as one library call: from a dataset to a model bundle. Loads the dataset, builds
// the vocabulary, prepares (or opens) the feature store, trains (satcap/train/trainer.h), writes
// the best model bundle and scores it on the test split.
#pragma once

#include <c10/core/Device.h>

#include <string>

#include "satcap/train/train_options.h"
#include "satcap/train/trainer.h"

namespace satcap {

class Communicator;

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
// With `comm`, this process is one of a data-parallel run (satcap/train/trainer.h): every process
// loads the data, rank 0 alone prepares the features (the others wait), writes the output folder
// and scores the test split; on --resume the others get the vocabulary and the checkpoint from it.
TrainSummary run_training(const TrainCommandOptions& command, const TrainOptions& options,
                          c10::Device device = c10::Device(c10::kCPU), bool quiet = false, Communicator* comm = nullptr);

}  // namespace satcap
