// Reading a TensorFlow.js layers model from its standard artifacts (model.json + weights.bin, as
// tools/node/import_nsfwjs.js writes them) into float32 tensors, dequantized exactly as tfjs does.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>

namespace satcap {

struct TfjsModel {
  std::filesystem::path dir;
  // modelTopology.model_config: {"class_name": "Model", "config": {"layers": [...], ...}}.
  nlohmann::json model_config;
  // Weights by manifest name ("Conv1/kernel"), float32 on the CPU, in TensorFlow's layouts
  // (Conv2D kernel HWIO, DepthwiseConv2D kernel HWCM, Dense kernel [in, out]).
  std::map<std::string, at::Tensor> weights;
  // "fnv1a64:<16 hex digits>" of weights.bin: part of the encoder's identity.
  std::string weights_digest;
};

// Reads DIR/model.json and the weight files its manifest names. uint8/uint16-quantized weights
// become float32(q * scale + min), with the product and sum in double precision as tfjs-core's
// io_utils.decodeWeights computes them. Throws ModelError naming the file or tensor at fault.
TfjsModel load_tfjs_model(const std::filesystem::path& dir);

// FNV-1a 64-bit digest of a file's bytes as "fnv1a64:<hex>" (throws ModelError if unreadable).
std::string file_digest(const std::filesystem::path& path);

}  // namespace satcap
