// What overlay.cpp and gallery.cpp both need to write their files: a folder made on demand and an
// RGB picture encoded (PNG or JPEG) in memory. Private to the viz layer.
#pragma once

#include <opencv2/core/mat.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace satcap {

// Creates `dir` and its parents if missing (nothing for an empty path). OutputError naming the
// folder when it cannot be created or is not a folder.
void ensure_directory(const std::filesystem::path& dir);

// Encodes a CV_8UC3 RGB picture by extension (".png", ".jpg") with OpenCV's imencode `params`.
// OutputError naming `what` when the encoder fails.
std::string encode_image(const cv::Mat& rgb, const std::string& ext, const std::vector<int>& params,
                         const std::string& what);

}  // namespace satcap
