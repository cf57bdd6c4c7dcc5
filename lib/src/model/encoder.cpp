#include "satcap/model/encoder.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/encoder_impl.h"
#include "satcap/runtime/error.h"

namespace satcap {

void validate(const EncoderOptions& o) {
  if (o.source.empty()) throw UsageError("--encoder must name an embedded encoder or a TorchScript file");
  if (o.grid < 1 || o.grid > 64) throw UsageError("--grid must be between 1 and 64 (got " + std::to_string(o.grid) + ")");
  if (o.trainable_blocks < 0) {
    throw UsageError("--trainable-blocks must be 0 or more (got " + std::to_string(o.trainable_blocks) + ")");
  }
}

at::Tensor Encoder::encode(const std::vector<cv::Mat>& rgb_images) {
  if (trainable_parameters().empty()) {
    at::NoGradGuard no_grad;
    return forward(preprocess(rgb_images));
  }
  return forward(preprocess(rgb_images));
}

ImageLimits Encoder::read_limits(ImageLimits base) const {
  // [height, width]; an encoder that describes no input size (a test double) reads full-size images.
  const nlohmann::json d = describe();
  const nlohmann::json* size = nullptr;
  if (d.contains("preprocessing") && d["preprocessing"].contains("input_size")) size = &d["preprocessing"]["input_size"];
  if (size && size->is_array() && size->size() == 2 && (*size)[0].is_number_integer() && (*size)[1].is_number_integer())
    base.min_side = std::max((*size)[0].get<int>(), (*size)[1].get<int>());
  return base;
}

void Encoder::load_trainable(const std::map<std::string, at::Tensor>& weights, const std::string& where) {
  at::NoGradGuard no_grad;
  auto mine = named_trainable_parameters();
  if (mine.size() != weights.size())
    throw ModelError(where + ": " + std::to_string(weights.size()) + " fine-tuned encoder tensors, the encoder " +
                     identity() + " has " + std::to_string(mine.size()) + " trainable ones");
  for (auto& [name, target] : mine) {
    auto it = weights.find(name);
    if (it == weights.end()) throw ModelError(where + ": fine-tuned encoder tensor '" + name + "' is missing");
    if (it->second.sizes() != target.sizes())
      throw ModelError(where + ": fine-tuned encoder tensor '" + name + "' has wrong shape: got " +
                       c10::str(it->second.sizes()) + ", expected " + c10::str(target.sizes()));
    target.copy_(it->second.to(target.scalar_type()));
  }
}

void Encoder::freeze() {
  for (auto& t : trainable_parameters()) t.requires_grad_(false);
}

std::unique_ptr<Encoder> load_encoder(const EncoderOptions& options) {
  validate(options);
  const std::string& s = options.source;
  const bool looks_like_file = s.find('/') != std::string::npos || (s.size() > 3 && s.substr(s.size() - 3) == ".pt") ||
                               std::filesystem::exists(s);
  if (s == "mobilenet_v2" || s == "inception_v3") return detail::load_embedded_encoder(options);
  if (looks_like_file) return detail::load_torchscript_encoder(options);
  throw UsageError("--encoder " + s + ": not an embedded encoder (mobilenet_v2, inception_v3) nor a TorchScript file");
}

namespace detail {

nlohmann::json Preprocessing::describe() const {
  return {{"input_size", {height, width}},
          {"resize", align_corners ? "bilinear, align_corners=true (tf.image.resizeBilinear as nsfwjs)" : "bilinear"},
          {"channel_order", bgr ? "BGR" : "RGB"},
          {"scale", "pixel / 255"},
          {"mean", mean},
          {"std", std}};
}

namespace {

// One axis of ATen's bilinear resize (upsample_bilinear2d's source index and weights): output
// index o reads input indices lo[o] and lo[o] + step[o] with weights 1 - w[o] and w[o].
struct Taps {
  std::vector<std::int64_t> lo, step;
  std::vector<float> w;
};

Taps bilinear_taps(std::int64_t in, std::int64_t out, bool align_corners) {
  Taps t;
  const float scale = align_corners ? (out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f)
                                    : static_cast<float>(in) / static_cast<float>(out);
  for (std::int64_t o = 0; o < out; ++o) {
    float src = align_corners ? scale * static_cast<float>(o)
                              : std::max(scale * (static_cast<float>(o) + 0.5f) - 0.5f, 0.0f);
    const auto lo = static_cast<std::int64_t>(src);
    t.lo.push_back(lo);
    t.step.push_back(lo < in - 1 ? 1 : 0);
    t.w.push_back(std::min(std::max(src - static_cast<float>(lo), 0.0f), 1.0f));
  }
  return t;
}

// image (8-bit RGB) -> [3, height, width] at `out`, as preprocess_images_reference computes it.
void preprocess_into_cpu(const cv::Mat& rgb, const Preprocessing& p, float* out) {
  const std::int64_t H = p.height, W = p.width;
  const Taps ty = bilinear_taps(rgb.rows, H, p.align_corners), tx = bilinear_taps(rgb.cols, W, p.align_corners);
  for (int c = 0; c < 3; ++c) {
    const int src_c = p.bgr ? 2 - c : c;  // the image is RGB
    const float mean = static_cast<float>(p.mean[static_cast<std::size_t>(c)]);
    const float sd = static_cast<float>(p.std[static_cast<std::size_t>(c)]);
    float* plane = out + c * H * W;
    for (std::int64_t y = 0; y < H; ++y) {
      const std::uint8_t* r0 = rgb.ptr<std::uint8_t>(static_cast<int>(ty.lo[static_cast<std::size_t>(y)]));
      const std::uint8_t* r1 =
          rgb.ptr<std::uint8_t>(static_cast<int>(ty.lo[static_cast<std::size_t>(y)] + ty.step[static_cast<std::size_t>(y)]));
      const float wy = ty.w[static_cast<std::size_t>(y)];
      for (std::int64_t x = 0; x < W; ++x) {
        const auto xs = static_cast<std::size_t>(x);
        const std::int64_t x0 = tx.lo[xs] * 3 + src_c, x1 = x0 + tx.step[xs] * 3;
        const float wx = tx.w[xs];
        const float top = (1 - wx) * static_cast<float>(r0[x0]) + wx * static_cast<float>(r0[x1]);
        const float bottom = (1 - wx) * static_cast<float>(r1[x0]) + wx * static_cast<float>(r1[x1]);
        const float v = ((1 - wy) * top + wy * bottom) / 255.0f;
        plane[y * W + x] = (v - mean) / sd;  // a division, as the tensor expression
      }
    }
  }
}

}  // namespace

at::Tensor preprocess_images(const std::vector<cv::Mat>& rgb_images, const Preprocessing& p, c10::Device device) {
  if (rgb_images.empty()) throw InputError("no images to encode");
  if (!device.is_cpu()) return preprocess_images_reference(rgb_images, p, device);
  // On the CPU one plain pass per image, straight into the batch: ATen's version makes four
  // full-size float copies of each image and starts OpenMP teams on prepare's reader threads.
  for (std::size_t i = 0; i < rgb_images.size(); ++i) {
    if (rgb_images[i].empty() || rgb_images[i].type() != CV_8UC3)
      throw InputError("image " + std::to_string(i) + " of the batch is not 8-bit 3-channel RGB");
  }
  auto batch = at::empty({static_cast<std::int64_t>(rgb_images.size()), 3, p.height, p.width}, at::kFloat);
  float* out = batch.data_ptr<float>();
  for (std::size_t i = 0; i < rgb_images.size(); ++i)
    preprocess_into_cpu(rgb_images[i], p, out + static_cast<std::int64_t>(i) * 3 * p.height * p.width);
  return batch;  // [B, 3, H, W]
}

// The same preprocessing as tensor operations (other devices; the tests' reference).
at::Tensor preprocess_images_reference(const std::vector<cv::Mat>& rgb_images, const Preprocessing& p,
                                       c10::Device device) {
  if (rgb_images.empty()) throw InputError("no images to encode");
  std::vector<at::Tensor> batch;
  batch.reserve(rgb_images.size());
  auto mean = at::tensor(std::vector<double>(p.mean.begin(), p.mean.end()), at::TensorOptions().dtype(at::kFloat))
                  .view({1, 3, 1, 1}).to(device);
  auto std = at::tensor(std::vector<double>(p.std.begin(), p.std.end()), at::TensorOptions().dtype(at::kFloat))
                 .view({1, 3, 1, 1}).to(device);
  for (std::size_t i = 0; i < rgb_images.size(); ++i) {
    cv::Mat img = rgb_images[i];
    if (img.empty() || img.type() != CV_8UC3) {
      throw InputError("image " + std::to_string(i) + " of the batch is not 8-bit 3-channel RGB");
    }
    if (!img.isContinuous()) img = img.clone();
    // [H, W, 3] uint8 (RGB) -> [1, 3, H, W] float in [0, 1] on the device.
    at::Tensor x = at::from_blob(img.data, {img.rows, img.cols, 3}, at::kByte).to(device);
    x = x.permute({2, 0, 1}).unsqueeze(0).to(at::kFloat).div(255.0);
    if (p.bgr) x = x.flip({1});
    if (x.size(2) != p.height || x.size(3) != p.width) {
      // nsfwjs divides by 255 first and then resizes; the same order here.
      x = at::upsample_bilinear2d(x, std::vector<std::int64_t>{p.height, p.width}, p.align_corners, c10::nullopt, c10::nullopt);
    }
    batch.push_back(x);
  }
  return (at::cat(batch, 0) - mean) / std;  // [B, 3, H, W]
}

at::Tensor map_to_regions(const at::Tensor& map, int grid) {
  at::Tensor m = map;  // [B, D, h, w]
  if (m.size(2) != grid || m.size(3) != grid) m = at::adaptive_avg_pool2d(m, {grid, grid});
  return m.flatten(2).transpose(1, 2).contiguous();  // [B, n, D], row-major over the grid
}

}  // namespace detail
}  // namespace satcap
