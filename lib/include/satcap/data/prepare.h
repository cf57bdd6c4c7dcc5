// `satcap prepare`: runs the encoder once over a dataset's images and keeps the region features
// in a FeatureStore, so that training never runs the CNN again (with a frozen encoder).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "satcap/data/image.h"

namespace satcap {

class Dataset;
class Encoder;

struct PrepareOptions {
  // Images per encoder batch.
  int batch_size = 32;
  // Store features as float16 (half the disk; about 3 significant digits).
  bool fp16 = false;
  // Split to prepare ("all" = every image of the dataset).
  std::string split = "all";
  // Stop at the first unreadable image (InputError) instead of reporting it and going on.
  bool strict = false;
  // Limits for decoding images.
  ImageLimits limits;
  // Called after each batch with (images done, images to do); may be empty.
  std::function<void(std::size_t, std::size_t)> progress;
};

// Throws UsageError for batch_size < 1 or an empty split name.
void validate(const PrepareOptions& options);

struct PrepareSummary {
  std::size_t images = 0;         // rows of the store (unique image files of the split)
  std::size_t already = 0;        // already stored by an earlier (interrupted) run
  std::size_t changed = 0;        // stored before, but their image changed since: encoded again
  std::size_t encoded = 0;        // encoded by this run
  std::size_t failed = 0;         // unreadable images (listed in failures)
  std::vector<std::string> failures;  // "path: reason"
  double seconds = 0;
};

// Encodes every image of `options.split` not yet in the store at `store_dir` (created, or resumed
// when an earlier run was interrupted), batched, decoding the next batch on a worker thread while
// the encoder runs. Unreadable images are reported in the summary (or thrown when strict); the
// store is finalized at the end. Throws InputError (no images, store mismatch), ModelError
// (another encoder's store, wrong feature shape), OutputError (cannot write).
PrepareSummary prepare_features(const Dataset& dataset, Encoder& encoder, const std::string& store_dir,
                                const PrepareOptions& options = {});

}  // namespace satcap
