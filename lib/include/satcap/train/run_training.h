// `satcap train` as one library call: from a dataset to a model bundle. Loads the dataset, builds
// the vocabulary, prepares (or opens) the feature store, trains (satcap/train/trainer.h), writes
// the best model bundle and scores it on the test split.
#pragma once

#include <c10/core/Device.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

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
  // Start a new run in `out` although it holds one: its model/, checkpoint.pt, train_log.jsonl,
  // curves.png, config.effective.json, vocab.json and test_scores.json are deleted first (a
  // features/ store and files that are not a run's are kept). Without it, a folder holding a run
  // (or anything but a run's files) is refused unless TrainOptions::resume continues the run.
  bool overwrite = false;
  // The training options the user gave (config file and command line, TrainOptions' JSON keys):
  // with --resume, those that differ from the run's own are applied or refused (resume_options);
  // the others keep the run's values. Null: every option passed to run_training counts as given.
  nlohmann::json given_options;
};

// The files of a training run in its --out folder (what --overwrite deletes).
const std::vector<std::string>& run_file_names();

// Loads the dataset, builds (or on resume reloads) the vocabulary, opens or prepares the feature
// store, trains, writes the best model bundle to <out>/model and (eval_test) scores it on the test
// split. `options` is the effective configuration; with resume, the run's own options with those
// given now applied where they may change (resume_options). What ran is what is recorded in
// <out>/config.effective.json, the checkpoints and the bundle. Throws UsageError for an --out that
// holds another run (see `overwrite`), InputError when the feature store's rows are not of this
// dataset's images (changed since prepare).
// With `comm`, this process is one of a data-parallel run (satcap/train/trainer.h): every process
// loads the data, rank 0 alone prepares the features (the others wait), writes the output folder
// and scores the test split; on --resume the others get the vocabulary and the checkpoint from it.
TrainSummary run_training(const TrainCommandOptions& command, const TrainOptions& options,
                          c10::Device device = c10::Device(c10::kCPU), bool quiet = false, Communicator* comm = nullptr);

}  // namespace satcap
