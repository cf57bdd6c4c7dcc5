// Reading images from disk into 8-bit RGB, safely: the one place where files become pixels.
// No torch here. OpenCV decodes BGR; everything this header returns is RGB.
#pragma once

#include <opencv2/core/mat.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace satcap {

struct ImageLimits {
  // Refuse images with more pixels than this (decompression bombs, absurd scans).
  std::int64_t max_pixels = 50'000'000;
  // JPEG only: decode at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, several times cheaper than a
  // full decode) while the shorter side stays at least this many pixels; 0 = full size. An encoder
  // that resizes to S x S passes S (Encoder::read_limits), the same for training and captioning.
  int min_side = 0;
};

// Reads JPEG, PNG, BMP, WebP or TIFF from `path` as CV_8UC3 in RGB order, with EXIF orientation
// applied; grayscale, alpha (composited on white) and 16-bit images become 8-bit RGB.
// Throws InputError naming the file when it is missing, unreadable, truncated, not an image, or
// larger than `limits.max_pixels`. The format is told by the bytes, not the extension; dimensions
// and completeness (JPEG end-of-image marker, PNG IEND, BMP/WebP sizes) are checked from the
// headers before anything is decoded, so a decompression bomb is refused without being decoded.
// Decoder warnings (libjpeg, libpng) do not reach stderr: they become part of the error message.
// Thread-safe. JPEG (libjpeg, warnings collected per decoder) decodes in parallel; the other formats'
// decoding steps are serialised (it redirects stderr while it runs).
cv::Mat read_image_rgb(const std::filesystem::path& path, const ImageLimits& limits = {});

// True for the extensions read_image_rgb accepts (.jpg .jpeg .png .bmp .webp .tif .tiff, any case).
bool has_image_extension(const std::filesystem::path& path);

// Expands command-line inputs into image paths, in order: a file is taken as is; a folder is
// searched recursively for files with image extensions (sorted); a ".txt" or ".lst" file is a
// list, one path per line (blank lines and lines starting with '#' skipped, relative paths taken
// from the list's folder, surrounding spaces and a UTF-8 BOM ignored). Throws InputError for an
// input that does not exist, a folder that cannot be listed or holds no images; the entries of a list are not
// checked here (read_image_rgb reports each bad one, so a batch can go on with the others).
std::vector<std::filesystem::path> expand_image_inputs(const std::vector<std::string>& inputs);

}  // namespace satcap
