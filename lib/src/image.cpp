#include "satcap/image.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <fstream>

#include "satcap/error.h"

namespace fs = std::filesystem;

namespace satcap {

bool has_image_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const char* known[] = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"};
  return std::any_of(std::begin(known), std::end(known), [&](const char* k) { return ext == k; });
}

cv::Mat read_image_rgb(const fs::path& path, const ImageLimits& limits) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(path.string() + ": no such file");
  if (fs::is_directory(path, ec)) throw InputError(path.string() + ": is a folder, not an image");
  cv::Mat raw = cv::imread(path.string(), cv::IMREAD_COLOR);  // BGR, EXIF orientation applied
  if (raw.empty()) throw InputError(path.string() + ": not a readable image");
  if (static_cast<std::int64_t>(raw.rows) * raw.cols > limits.max_pixels) {
    throw InputError(path.string() + ": " + std::to_string(raw.cols) + "x" + std::to_string(raw.rows) +
                     " pixels exceeds the limit of " + std::to_string(limits.max_pixels));
  }
  cv::Mat rgb;
  cv::cvtColor(raw, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

std::vector<fs::path> expand_image_inputs(const std::vector<std::string>& inputs) {
  std::vector<fs::path> out;
  for (const auto& input : inputs) {
    fs::path p(input);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> found;
      for (auto it = fs::recursive_directory_iterator(p, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) break;
        if (it->is_regular_file(ec) && has_image_extension(it->path())) found.push_back(it->path());
      }
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else if (p.extension() == ".txt" || p.extension() == ".lst") {
      std::ifstream list(p);
      if (!list) throw InputError(p.string() + ": cannot open image list");
      std::string line;
      while (std::getline(list, line)) {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
        if (line.empty() || line[0] == '#') continue;
        fs::path entry(line);
        out.push_back(entry.is_absolute() ? entry : p.parent_path() / entry);
      }
    } else {
      if (!fs::exists(p, ec)) throw InputError(p.string() + ": no such file or folder");
      out.push_back(p);
    }
  }
  return out;
}

}  // namespace satcap
