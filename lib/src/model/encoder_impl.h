// Private to the encoder's sources: the two encoder kinds and the preprocessing they share.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "satcap/model/encoder.h"

namespace satcap::detail {

// How RGB 8-bit pixels become the network's input.
struct Preprocessing {
  std::int64_t height = 224, width = 224;
  // Resizing straight to height x width (no crop, aspect ratio not kept), bilinear.
  // align_corners = true is tf.image.resizeBilinear(..., alignCorners=true), what nsfwjs uses.
  bool align_corners = false;
  // x = (pixel / 255 - mean[c]) / std[c], c in the channel order below.
  std::array<double, 3> mean{0, 0, 0};
  std::array<double, 3> std{1, 1, 1};
  bool bgr = false;  // channel order the network expects ("RGB" unless it says "BGR")

  nlohmann::json describe() const;
};

// [B, 3, height, width] float on `device`. On the CPU a plain pass per image; elsewhere (and as the
// tests' reference) tensor operations: pixel / 255, upsample_bilinear2d, (x - mean) / std.
at::Tensor preprocess_images(const std::vector<cv::Mat>& rgb_images, const Preprocessing& p, c10::Device device);
at::Tensor preprocess_images_reference(const std::vector<cv::Mat>& rgb_images, const Preprocessing& p,
                                       c10::Device device);

// [B, D, h, w] -> [B, grid*grid, D], pooled adaptively when (h, w) != (grid, grid).
at::Tensor map_to_regions(const at::Tensor& map, int grid);

std::unique_ptr<Encoder> load_embedded_encoder(const EncoderOptions& options);
std::unique_ptr<Encoder> load_torchscript_encoder(const EncoderOptions& options);

}  // namespace satcap::detail
