// The CNN encoder: images -> region features h1..hn (the paper's annotation vectors a_1..a_L).
// Two sources behind one class: the embedded networks imported from TensorFlow.js (nsfwjs@4.4.0's
// MobileNetV2 and InceptionV3 trunks) and any TorchScript CNN exported with tools/export_encoder.py.
// The preprocessing (input size, mean, std, channel order) travels with the network, never hard-coded
// at call sites.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <nlohmann/json_fwd.hpp>
#include <opencv2/core/mat.hpp>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "satcap/data/image.h"

namespace satcap {

struct EncoderOptions {
  // An embedded encoder's name ("mobilenet_v2", "inception_v3") or the path of a TorchScript file
  // (its preprocessing is read from the JSON file beside it, same name with ".json").
  std::string source = "mobilenet_v2";
  // Where the embedded encoders were imported by tools/setup.sh ("" = <repository>/models/embedded).
  std::string models_dir;
  // Number of the network's last blocks (up to the feature map) left trainable; 0 = frozen.
  int trainable_blocks = 0;
  // Region grid (rows = cols): the feature map is average-pooled adaptively to grid x grid when
  // its own size differs (MobileNetV2 at 224 gives 14x14 natively, InceptionV3 at 299 17x17).
  int grid = 14;
};

// Throws UsageError for an invalid option ("--grid must be between 1 and 64 (got 0)").
void validate(const EncoderOptions& options);

class Encoder {
 public:
  virtual ~Encoder() = default;

  // RGB 8-bit images (any sizes) -> the network's input [B, 3, H, W] float, on device().
  virtual at::Tensor preprocess(const std::vector<cv::Mat>& rgb_images) const = 0;
  // [B, 3, H, W] -> region features [B, n, D], n = grid_rows() * grid_cols(), row-major over the grid.
  virtual at::Tensor forward(const at::Tensor& input) = 0;
  // preprocess + forward (without autograd when frozen). [B, n, D]
  at::Tensor encode(const std::vector<cv::Mat>& rgb_images);
  // `base` with min_side set to the network's larger input side: what every reader of images for
  // this encoder passes to read_image_rgb (JPEGs then decode at the smallest DCT scale that still
  // covers the input size; training and captioning read an image alike).
  ImageLimits read_limits(ImageLimits base = {}) const;

  virtual int grid_rows() const = 0;
  virtual int grid_cols() const = 0;
  int regions() const { return grid_rows() * grid_cols(); }
  virtual int dim() const = 0;  // D
  // Stable identity of the features this encoder produces (source, feature layer, input size,
  // weights digest): feature stores and model bundles refuse features of another identity.
  virtual std::string identity() const = 0;
  // Identity, preprocessing, grid and dim as JSON (stored in model bundles and feature stores).
  virtual nlohmann::json describe() const = 0;
  virtual c10::Device device() const = 0;
  virtual void to(c10::Device device) = 0;
  // Parameters left trainable by EncoderOptions::trainable_blocks (empty when frozen).
  virtual std::vector<at::Tensor> trainable_parameters() = 0;
  // The same parameters by stable name, as fine-tuned bundles and checkpoints store them
  // (embedded: "<layer>/<weight|bias|gamma|beta>"; TorchScript: the module's dotted names).
  virtual std::vector<std::pair<std::string, at::Tensor>> named_trainable_parameters() { return {}; }
  // Copies fine-tuned weights (named as named_trainable_parameters) into the trainable parameters.
  // Every trainable parameter must be given, with its shape; throws ModelError naming `where` and
  // the tensor otherwise.
  void load_trainable(const std::map<std::string, at::Tensor>& weights, const std::string& where);
  // Makes every parameter frozen again (for inference with fine-tuned weights: no autograd,
  // embedded encoders fold their BatchNormalizations again).
  virtual void freeze();
  // Fine-tuned weights make other features: identity() ends with ":tuned=<tag>" once a tag is set
  // (the digest of the fine-tuned weights), so frozen features are never mixed with them.
  void set_tuned_tag(const std::string& tag) { tuned_tag_ = tag; }
  const std::string& tuned_tag() const { return tuned_tag_; }
  virtual void train(bool on) = 0;

 protected:
  // ":tuned=<tag>" or "" (appended to identity() by the implementations).
  std::string tuned_suffix() const { return tuned_tag_.empty() ? std::string() : ":tuned=" + tuned_tag_; }

 private:
  std::string tuned_tag_;
};

// Loads the encoder named by `options`; throws ModelError (missing or malformed network, saying
// how to produce it) or UsageError (bad option).
std::unique_ptr<Encoder> load_encoder(const EncoderOptions& options);

}  // namespace satcap
