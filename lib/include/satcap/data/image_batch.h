// Reading a batch of images for an encoder: read, decoded and preprocessed on a few worker threads.
// prepare's reading stage, also timed on its own by `satcap bench`.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "satcap/data/image.h"

namespace satcap {

class Encoder;

struct DecodedBatch {
  std::vector<std::size_t> rows;       // rows decoded successfully
  at::Tensor input;                    // [rows, 3, H, W] the encoder's preprocessed input (undefined if none)
  std::vector<std::size_t> failed_rows;
  std::vector<std::string> failures;   // "path: reason", one per failed row
};

// Images paths[rows[i]] on `workers` threads (image i on worker i mod W), gathered in row order, so
// the result does not depend on the number of workers. A broken image is a failed row, not an
// exception.
DecodedBatch decode_image_batch(const std::vector<std::size_t>& rows, const std::vector<std::filesystem::path>& paths,
                          const ImageLimits& limits, const Encoder& encoder, std::size_t workers);

}  // namespace satcap
