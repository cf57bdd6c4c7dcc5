// The file helpers shared by the viz layer (see output_files.h).
#include "viz/output_files.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "satcap/runtime/error.h"

namespace fs = std::filesystem;

namespace satcap {

void ensure_directory(const fs::path& dir) {
  std::error_code ec;
  if (dir.empty()) return;
  fs::create_directories(dir, ec);
  if (ec) throw OutputError(dir.string() + ": cannot create folder (" + ec.message() + ")");
  if (!fs::is_directory(dir, ec)) throw OutputError(dir.string() + ": not a folder");
}

std::string encode_image(const cv::Mat& rgb, const std::string& ext, const std::vector<int>& params,
                         const std::string& what) {
  cv::Mat bgr;
  std::vector<uchar> buf;
  try {
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    if (!cv::imencode(ext, bgr, buf, params)) throw OutputError(what + ": the image encoder failed");
  } catch (const cv::Exception& e) {
    throw OutputError(what + ": the image encoder failed (" + e.what() + ")");
  }
  return std::string(buf.begin(), buf.end());
}

}  // namespace satcap
