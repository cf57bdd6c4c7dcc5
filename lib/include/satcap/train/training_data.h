// What the training loop trains on: the training captions (stored flat), the validation images
// with their references, and how to get the features (or, when fine-tuning, the images) of a row.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace satcap {

class Encoder;

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

}  // namespace satcap
