// Captioning images with a trained model: the pipeline behind `satcap caption`, reused by
// evaluation and benchmarks.
//
//   Captioner (one model loaded once: the bundle and the encoder its config.json names)
//     caption_images(rgb images)              -> one ImageCaption per image (one batch, in memory)
//     caption_files(paths, sink)              -> images decoded on a worker thread (bounded queue)
//                                                while the previous batch runs through the encoder
//                                                and the search; sink called in input order
//
// No torch in this header (the model lives behind a pointer), so the app and the tests that only
// drive the command compile fast.
#pragma once

#include <c10/core/Device.h>
#include <opencv2/core/mat.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "satcap/data/image.h"
#include "satcap/decode/search_options.h"
#include "satcap/runtime/precision.h"
#include "satcap/viz/overlay.h"

namespace satcap {

class Encoder;
struct Bundle;

// The model used when none is given: $SATCAP_MODEL when set, else <SATCAP_DEFAULT_MODELS_DIR>/default
// (the embedded default model, models/default in the repository).
std::filesystem::path default_model_dir();

// The encoder a bundle's config.json names, on `device` (embedded encoders from `models_dir`,
// "" = the default), with the bundle's fine-tuned encoder weights applied: frozen for inference,
// or left trainable (`trainable`, to continue tuning or inspect them). Throws ModelError when the
// encoder cannot be loaded or its identity differs from the bundle's.
std::unique_ptr<Encoder> load_bundle_encoder(const Bundle& bundle, const std::string& models_dir, c10::Device device,
                                             bool trainable = false);

struct CaptionerOptions {
  // Model bundle folder (config.json, vocab.json, weights.pt) or a training output folder
  // ("" = default_model_dir()).
  std::string model;
  // Where the embedded encoders were imported ("" = <repository>/models/embedded).
  std::string encoder_models_dir;
  // The search: beam width, longest caption, length penalty, alternatives, hard-attention context.
  SearchOptions search;
  // Images per batch through the encoder and the search.
  int batch_size = 8;
  // Attention samples drawn per word from alpha_t for the overlays (the paper's hard-attention
  // figures mark the sampled locations); 0 = none. Drawn after decoding with `seed`.
  int samples_per_word = 0;
  // Never emit <unk> (the search bans it like <pad> and <start>).
  bool ban_unk = true;
  // Seed of every random draw (hard_decode = sample, attention samples): same seed, same output.
  std::uint64_t seed = 0;
  // Limits for decoding images.
  ImageLimits limits;
  // Precision of the encoder's forward and the search (satcap/runtime/precision.h): autocast around
  // both (fp16: CUDA only); the features and the beam scores stay float32.
  Precision precision = Precision::fp32;
};

// Throws UsageError naming the option ("--beam must be at least 1 (got 0)").
void validate(const CaptionerOptions& options);

// One image's result.
struct ImageCaption {
  std::size_t index = 0;             // position in the input
  std::filesystem::path path;        // empty for in-memory images
  std::string error;                 // non-empty: the image could not be read ("PATH: reason"); nothing else is set
  std::vector<std::string> words;    // the best caption (no <start>/<end>)
  std::vector<std::int64_t> tokens;  // its vocabulary ids
  double score = 0.0;                // the ranking score (log-probability, length-penalised if asked)
  double log_prob = 0.0;             // total log-probability of the words (and <end> when finished)
  bool finished = true;              // false: cut at max_length without <end>
  std::vector<std::vector<float>> alpha;     // [words][grid_rows * grid_cols]: alpha_t of each word, rows sum to 1
  int grid_rows = 0;
  int grid_cols = 0;
  std::vector<Alternative> alternatives;     // the other hypotheses, best first (alternatives - 1 of them)
  std::vector<std::vector<int>> sampled;     // per word, the regions drawn from alpha_t (samples_per_word > 0)
  cv::Mat rgb;                               // the decoded image (RGB), when the caller asked to keep it

  bool ok() const { return error.empty(); }
  std::string caption() const;               // words joined by spaces
  // The CaptionedImage the overlay library draws (rgb must be set).
  CaptionedImage to_captioned_image() const;
};

class Captioner {
 public:
  // Loads the bundle and the encoder its config.json describes onto `device`. Throws ModelError
  // naming the model folder when it is missing or malformed, or when the encoder found now is not
  // the one the model was trained on (identity, grid or feature size differ); UsageError for options.
  Captioner(const CaptionerOptions& options, c10::Device device = c10::Device(c10::kCPU));
  ~Captioner();
  Captioner(const Captioner&) = delete;
  Captioner& operator=(const Captioner&) = delete;

  const CaptionerOptions& options() const;
  const Bundle& bundle() const;
  Encoder& encoder();
  std::filesystem::path model_dir() const;
  bool hard_attention() const;
  int grid_rows() const;
  int grid_cols() const;

  // Captions a batch of RGB images (CV_8UC3, any sizes) in one encoder pass and one batched search.
  // Results are in input order; `keep_images` stores each image in ImageCaption::rgb.
  std::vector<ImageCaption> caption_images(const std::vector<cv::Mat>& rgb, bool keep_images = false);

  struct FileSummary {
    std::size_t images = 0;   // inputs
    std::size_t failed = 0;   // unreadable images (their ImageCaption carries the error)
    double seconds = 0.0;     // wall time of the whole call
    double encode_seconds = 0.0;   // of which in the encoder (preprocessing included)
    double search_seconds = 0.0;   // of which in the search
    double wait_seconds = 0.0;     // of which waiting for the reader thread to decode images
  };
  // Captions image files in batches of options().batch_size: a worker thread decodes the next
  // batch (at most two batches ahead) while this thread encodes and searches. `sink` receives every
  // input exactly once, in input order, unreadable ones with `error` set; `keep_images` keeps the
  // decoded picture in ImageCaption::rgb for the sink (released after it returns). `progress`
  // (optional) gets (done, total) after each batch. Exceptions from the sink or the model stop the
  // run (the worker is joined) and propagate.
  FileSummary caption_files(const std::vector<std::filesystem::path>& paths,
                            const std::function<void(ImageCaption&)>& sink, bool keep_images = false,
                            const std::function<void(std::size_t, std::size_t)>& progress = {});

  struct Impl;  // opaque: the bundle, the encoder and the search settings

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace satcap
