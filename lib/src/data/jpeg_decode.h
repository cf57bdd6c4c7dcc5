// JPEG decoding with libjpeg directly (internal to image.cpp): thread-safe without redirecting
// stderr (libjpeg's warnings are collected per decoder), and optionally at 1/2, 1/4 or 1/8 scale
// through libjpeg's DCT scaling, several times cheaper than decoding every pixel of a photograph
// that the encoder shrinks to 224 pixels anyway.
#pragma once

#include <opencv2/core/mat.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace satcap::detail {

struct JpegDecoded {
  cv::Mat image;         // CV_8UC3 RGB, or CV_8UC1 for grayscale files; empty on failure
  std::string messages;  // libjpeg's warnings and error, "; "-separated, as libjpeg words them
  bool handled = true;   // false: a colour space left to OpenCV (CMYK, YCCK)
  int scale_denom = 1;   // 1, 2, 4 or 8
};

// min_side > 0: the largest scale whose shorter side is still at least min_side pixels.
JpegDecoded decode_jpeg(const std::vector<std::uint8_t>& data, int min_side);

// The size libjpeg gives an image of `size` pixels at 1/denom scale.
inline std::int64_t scaled_size(std::int64_t size, int denom) { return (size + denom - 1) / denom; }

}  // namespace satcap::detail
