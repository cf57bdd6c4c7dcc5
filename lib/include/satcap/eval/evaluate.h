// `satcap eval`: a trained model on one split of a dataset. Decodes every image of the split
// (from the images through the caption pipeline, captioner.h, or from a prepared feature store),
// scores the captions against the split's references with the official-equivalent metrics
// (metrics.h: BLEU-1..4, ROUGE-L, CIDEr) and, when object boxes are available, measures whether
// the attention points at the objects the caption names (pointing.h). Writes
//   OUT/results.json    COCO results: [{"image_id": int, "caption": str}], split order
//   OUT/metrics.json    format_version, the metric keys of `satcap score`, "pointing" (when boxes),
//                       "pointing_mass", "pointing_chance", "pointing_words", "pointing_per_class",
//                       "attention_entropy" (nats, mean over words), "attention_entropy_max"
//                       (ln of the regions), "images", "failed", "beam", "max_length", ...
//   OUT/pointing.jsonl  with per_word: one line per generated word that names a class
//                       ({"image_id", "caption", position, word, class, present, hit, cell, ...}).
// No torch in this header.
#pragma once

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "satcap/decode/search_options.h"

namespace satcap {

struct EvalOptions {
  // Model bundle folder or training output folder ("" = the default model, captioner.h).
  std::string model;
  // The dataset: COCO captions file, Karpathy dataset.json, Flickr8k token file, or a folder (dataset.h).
  std::string data;
  // Split to evaluate.
  std::string split = "test";
  // A prepared feature store (satcap prepare / satcap train's OUT/features) to decode from instead
  // of the images ("" = decode the images with the model's encoder).
  std::string features;
  // The search (its alternatives are not used: one caption per image is scored).
  SearchOptions search;
  // Images per batch.
  int batch_size = 16;
  // Output folder (created if missing).
  std::string out = "eval";
  // Also write OUT/pointing.jsonl (one line per class word).
  bool per_word = false;
  // COCO instances file with the object boxes ("" = instances.json beside the dataset file, or in
  // the dataset folder, when there is one; none = no pointing).
  std::string instances;
  // Extra words per class for pointing: JSON {"class name": ["word", ...]} ("" = none).
  std::string synonyms;
  // Use satcap's built-in COCO synonyms (man, woman, people -> person, ...).
  bool builtin_synonyms = true;
  // Evaluate only the first N images of the split (0 = all).
  int max_images = 0;
  // Seed of random draws (hard_decode = sample).
  std::uint64_t seed = 0;
  // Where the embedded encoders were imported ("" = <repository>/models/embedded).
  std::string encoder_models_dir;
};

// Throws UsageError naming the option ("--beam must be at least 1 (got 0)").
void validate(const EvalOptions& options);

struct EvalReport {
  nlohmann::json metrics;          // what OUT/metrics.json holds
  std::size_t images = 0;          // images of the split evaluated (after max_images)
  std::size_t failed = 0;          // images that could not be decoded (no caption, not scored)
  std::vector<std::string> files;  // files written
  double seconds = 0.0;            // decoding and scoring wall time
};

// Runs the evaluation and writes the files. Progress (unless quiet), warnings and each failed
// image ("error: PATH: reason") go to `err`. Throws UsageError, InputError (dataset, split empty,
// instances, references), ModelError (model, encoder or features mismatch), OutputError.
// Images that fail are reported and left out of the scores; the report counts them (exit 6).
EvalReport run_evaluation(const EvalOptions& options, c10::Device device, std::ostream& err, bool quiet = false);

}  // namespace satcap
