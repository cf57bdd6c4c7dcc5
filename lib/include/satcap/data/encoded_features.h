// Region features saved by `satcap encode --out FILE` for later use: a versioned LibTorch archive
// holding features [N, n, D] (float32), the images' paths and the encoder's describe() JSON.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace satcap {

// Version of the file format written by save_encoded_features (readers refuse newer ones).
constexpr int kEncodedFeaturesVersion = 1;

struct EncodedFeatures {
  at::Tensor features;              // [N, n, D] float32
  std::vector<std::string> images;  // N paths, in the order of `features`
  nlohmann::json encoder;           // Encoder::describe() of the encoder that produced them
};

// Writes atomically (temporary file, fsync, rename); throws OutputError naming the path.
void save_encoded_features(const std::filesystem::path& path, const EncodedFeatures& data);

// Checks, before any work, that save_encoded_features(path, ...) can create its file: throws
// OutputError naming the path when it is a folder or its folder is missing or not writable
// (creates and removes the temporary file to find out).
void check_encoded_features_path(const std::filesystem::path& path);

// Throws InputError for a missing, malformed or newer file (naming it and what to do).
EncodedFeatures load_encoded_features(const std::filesystem::path& path);

}  // namespace satcap
