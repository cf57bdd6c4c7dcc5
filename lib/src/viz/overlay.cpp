// Drawing where each word looked (see overlay.h): the attention map of each word upsampled and
// blurred over the image (mask or heat), the word's label, the sampled regions of hard attention,
// the figure of all words in tiles, and the files of one image (one PNG per word, figure.png,
// words.avi). The HTML gallery is in gallery.cpp.
#include "satcap/viz/overlay.h"

#include <unistd.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iomanip>
#include <sstream>
#include <stdexcept>

#include "satcap/runtime/atomic_file.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "viz/output_files.h"

namespace fs = std::filesystem;

namespace satcap {
namespace {

cv::Mat scale_to_side(const cv::Mat& rgb, int side) {
  if (side <= 0) return rgb.clone();
  const int longer = std::max(rgb.cols, rgb.rows);
  if (longer == side) return rgb.clone();
  const double f = static_cast<double>(side) / longer;
  cv::Size size(std::max(1, static_cast<int>(std::lround(rgb.cols * f))),
                std::max(1, static_cast<int>(std::lround(rgb.rows * f))));
  cv::Mat out;
  cv::resize(rgb, out, size, 0, 0, f < 1.0 ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

// Small circles at the centres of the sampled regions (hard attention), counted per region.
void draw_samples(cv::Mat& rgb, const std::vector<int>& regions, int rows, int cols) {
  const double cw = static_cast<double>(rgb.cols) / cols, ch = static_cast<double>(rgb.rows) / rows;
  const int radius = std::max(2, static_cast<int>(std::lround(std::min(cw, ch) * 0.25)));
  const int thickness = std::max(1, radius / 3);
  for (int r : regions) {
    cv::Point centre(static_cast<int>(std::lround((r % cols + 0.5) * cw)),
                     static_cast<int>(std::lround((r / cols + 0.5) * ch)));
    cv::circle(rgb, centre, radius + thickness, cv::Scalar(0, 0, 0), thickness + 2, cv::LINE_AA);
    cv::circle(rgb, centre, radius, cv::Scalar(255, 40, 40), thickness, cv::LINE_AA);  // RGB red
  }
}

}  // namespace

std::string CaptionedImage::caption() const {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

void validate(const CaptionedImage& image) {
  const std::string who = image.image_path.empty() ? std::string("captioned image") : image.image_path;
  if (image.rgb.empty() || image.rgb.type() != CV_8UC3)
    throw std::invalid_argument(who + ": the image must be a non-empty CV_8UC3 RGB Mat");
  if (image.grid_rows <= 0 || image.grid_cols <= 0)
    throw std::invalid_argument(who + ": the attention grid must be at least 1x1");
  const std::size_t n = static_cast<std::size_t>(image.grid_rows) * image.grid_cols;
  if (image.alpha.size() != image.words.size())
    throw std::invalid_argument(who + ": " + std::to_string(image.alpha.size()) + " attention rows for " +
                                std::to_string(image.words.size()) + " words");
  for (std::size_t t = 0; t < image.alpha.size(); ++t)
    if (image.alpha[t].size() != n)
      throw std::invalid_argument(who + ": attention row " + std::to_string(t) + " has " +
                                  std::to_string(image.alpha[t].size()) + " weights, the grid has " +
                                  std::to_string(n));
  if (!image.sampled.empty()) {
    if (image.sampled.size() != image.words.size())
      throw std::invalid_argument(who + ": sampled regions given for " + std::to_string(image.sampled.size()) +
                                  " of " + std::to_string(image.words.size()) + " words");
    for (const auto& s : image.sampled)
      for (int r : s)
        if (r < 0 || static_cast<std::size_t>(r) >= n)
          throw std::invalid_argument(who + ": sampled region " + std::to_string(r) + " is outside the grid");
  }
}

void validate(const OverlayOptions& o) {
  if (!(o.opacity == -1.0 || (o.opacity >= 0.0 && o.opacity <= 1.0)))
    throw UsageError("overlay opacity must be in [0, 1] or -1 for the style's default (got " +
                     std::to_string(o.opacity) + ")");
  if (!(o.sigma_cells >= 0.0 && o.sigma_cells <= 20.0))
    throw UsageError("overlay sigma must be in [0, 20] grid cells (got " + std::to_string(o.sigma_cells) + ")");
  if (o.max_side != 0 && (o.max_side < 16 || o.max_side > 8192))
    throw UsageError("overlay image size must be 0 (keep) or in [16, 8192] pixels (got " +
                     std::to_string(o.max_side) + ")");
  if (o.tile_size < 16 || o.tile_size > 4096)
    throw UsageError("overlay tile size must be in [16, 4096] pixels (got " + std::to_string(o.tile_size) + ")");
  if (o.tiles_per_row < 1 || o.tiles_per_row > 100)
    throw UsageError("overlay tiles per row must be in [1, 100] (got " + std::to_string(o.tiles_per_row) + ")");
  if (!(o.video_seconds_per_word > 0.0 && o.video_seconds_per_word <= 60.0))
    throw UsageError("video seconds per word must be in (0, 60] (got " +
                     std::to_string(o.video_seconds_per_word) + ")");
}

double effective_opacity(const OverlayOptions& o) {
  if (o.opacity >= 0.0) return o.opacity;
  return o.style == OverlayStyle::heat ? 0.5 : 0.8;
}

cv::Mat attention_map(const std::vector<float>& alpha, int rows, int cols, cv::Size size, double sigma_cells) {
  if (rows <= 0 || cols <= 0 || size.width <= 0 || size.height <= 0)
    throw std::invalid_argument("attention_map: grid and image sizes must be positive");
  if (alpha.size() != static_cast<std::size_t>(rows) * cols)
    throw std::invalid_argument("attention_map: " + std::to_string(alpha.size()) + " weights for a " +
                                std::to_string(rows) + "x" + std::to_string(cols) + " grid");
  cv::Mat grid(rows, cols, CV_32F);
  for (int i = 0; i < rows * cols; ++i) {
    float v = alpha[static_cast<std::size_t>(i)];
    grid.at<float>(i / cols, i % cols) = std::isfinite(v) && v > 0.f ? v : 0.f;
  }
  // [rows, cols] -> [H, W]: bilinear, as pyramid_expand (order=1) does. Pixel centres are aligned
  // (OpenCV's half-pixel convention), so cell (r, c) covers the same stretch of the image as the
  // encoder's receptive-field grid.
  cv::Mat map;
  cv::resize(grid, map, size, 0, 0, cv::INTER_LINEAR);
  if (sigma_cells > 0.0) {
    const double sx = sigma_cells * size.width / cols, sy = sigma_cells * size.height / rows;
    cv::GaussianBlur(map, map, cv::Size(0, 0), sx, sy, cv::BORDER_REFLECT);
  }
  double lo = 0.0, hi = 0.0;
  cv::minMaxLoc(map, &lo, &hi);
  if (hi > 0.0) {
    map.convertTo(map, CV_32F, 1.0 / hi);
    cv::max(map, 0.0, map);  // blur rounding can dip a hair below 0
    cv::min(map, 1.0, map);
  } else {
    map.setTo(0.0);
  }
  return map;
}

cv::Mat draw_attention(const cv::Mat& rgb, const cv::Mat& map, const OverlayOptions& options) {
  if (rgb.empty() || rgb.type() != CV_8UC3) throw std::invalid_argument("draw_attention: image must be CV_8UC3");
  if (map.type() != CV_32F || map.size() != rgb.size())
    throw std::invalid_argument("draw_attention: map must be CV_32F of the image's size");
  const double o = effective_opacity(options);
  cv::Mat layer;  // CV_8UC3 RGB
  cv::Mat map8;
  map.convertTo(map8, CV_8U, 255.0);
  if (options.style == OverlayStyle::heat) {
    cv::Mat bgr;
    cv::applyColorMap(map8, bgr, cv::COLORMAP_JET);
    cv::cvtColor(bgr, layer, cv::COLOR_BGR2RGB);
  } else {
    cv::cvtColor(map8, layer, cv::COLOR_GRAY2RGB);
  }
  cv::Mat out;
  cv::addWeighted(rgb, 1.0 - o, layer, o, 0.0, out);
  return out;
}

void draw_label(cv::Mat& rgb, const std::string& text) {
  if (rgb.empty() || text.empty()) return;
  std::string ascii;
  for (unsigned char c : text) {
    if (c >= 0x80) {
      if ((c & 0xC0) != 0x80) ascii += '?';  // one '?' per UTF-8 character
    } else {
      ascii += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
    }
  }
  const int font = cv::FONT_HERSHEY_DUPLEX;
  double scale = std::max(0.35, rgb.cols / 320.0);
  int thickness = std::max(1, static_cast<int>(std::lround(scale * 1.5)));
  int baseline = 0;
  cv::Size ts = cv::getTextSize(ascii, font, scale, thickness, &baseline);
  const int margin = std::max(3, rgb.cols / 60);
  if (ts.width > rgb.cols - 2 * margin && ts.width > 0) {  // long words: shrink to fit
    scale *= static_cast<double>(rgb.cols - 2 * margin) / ts.width;
    scale = std::max(scale, 0.2);
    thickness = std::max(1, static_cast<int>(std::lround(scale * 1.5)));
    ts = cv::getTextSize(ascii, font, scale, thickness, &baseline);
  }
  cv::Point origin(margin, margin + ts.height);
  const int outline = thickness + std::max(2, thickness);
  cv::putText(rgb, ascii, origin, font, scale, cv::Scalar(0, 0, 0), outline, cv::LINE_AA);
  cv::putText(rgb, ascii, origin, font, scale, cv::Scalar(255, 255, 255), thickness, cv::LINE_AA);
}

RenderedOverlays render_overlays(const CaptionedImage& image, const OverlayOptions& options) {
  validate(image);
  validate(options);
  RenderedOverlays out;
  out.image = scale_to_side(image.rgb, options.max_side);
  for (std::size_t t = 0; t < image.words.size(); ++t) {
    cv::Mat map = attention_map(image.alpha[t], image.grid_rows, image.grid_cols, out.image.size(),
                                options.sigma_cells);
    cv::Mat word = draw_attention(out.image, map, options);
    if (options.draw_samples && !image.sampled.empty())
      draw_samples(word, image.sampled[t], image.grid_rows, image.grid_cols);
    if (options.label_words) draw_label(word, image.words[t]);
    out.words.push_back(std::move(word));
  }

  // The figure: tiles of the same size, the image first, wrapped into rows; white gaps.
  cv::Mat first = scale_to_side(out.image, options.tile_size);
  const cv::Size tile = first.size();
  const int count = static_cast<int>(out.words.size()) + 1;
  const int per_row = std::min(options.tiles_per_row, count);
  const int rows = (count + per_row - 1) / per_row;
  const int gap = std::max(2, options.tile_size / 50);
  out.figure = cv::Mat(rows * tile.height + (rows + 1) * gap, per_row * tile.width + (per_row + 1) * gap, CV_8UC3,
                       cv::Scalar(255, 255, 255));
  for (int i = 0; i < count; ++i) {
    cv::Mat pic;
    if (i == 0) {
      pic = first;
    } else {
      // Redraw at tile size so the label is sized for the tile, not shrunk with it.
      const std::size_t t = static_cast<std::size_t>(i - 1);
      cv::Mat map = attention_map(image.alpha[t], image.grid_rows, image.grid_cols, tile, options.sigma_cells);
      pic = draw_attention(first, map, options);
      if (options.draw_samples && !image.sampled.empty())
        draw_samples(pic, image.sampled[t], image.grid_rows, image.grid_cols);
      if (options.label_words) draw_label(pic, image.words[t]);
    }
    const int r = i / per_row, c = i % per_row;
    pic.copyTo(out.figure(cv::Rect(gap + c * (tile.width + gap), gap + r * (tile.height + gap), tile.width,
                                   tile.height)));
  }
  return out;
}

std::string safe_file_name(const std::string& word) {
  std::string out;
  for (unsigned char c : word) {
    if (out.size() >= 40) break;
    const bool keep = std::isalnum(c) && c < 0x80;
    out += keep || c == '-' || c == '_' ? static_cast<char>(c) : '_';
  }
  if (out.empty()) out = "word";
  return out;
}

void write_image_rgb(const fs::path& path, const cv::Mat& rgb) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext != ".png" && ext != ".jpg" && ext != ".jpeg")
    throw OutputError(path.string() + ": only .png and .jpg outputs are written");
  std::vector<int> params;
  if (ext == ".png") params = {cv::IMWRITE_PNG_COMPRESSION, 3};
  else params = {cv::IMWRITE_JPEG_QUALITY, 90};
  write_file_atomic(path, encode_image(rgb, ext, params, path.string()), ParentDirs::must_exist);
}

OverlayFiles write_overlays(const CaptionedImage& image, const RenderedOverlays& rendered, const fs::path& dir,
                            const OverlayOptions& options) {
  if (rendered.words.size() != image.words.size())
    throw std::invalid_argument("write_overlays: rendered overlays do not match the caption's words");
  ensure_directory(dir);
  OverlayFiles files;
  const std::size_t n = image.words.size();
  const int digits = std::max(2, static_cast<int>(std::to_string(n).size()));
  for (std::size_t t = 0; t < n; ++t) {
    std::ostringstream name;
    name << std::setw(digits) << std::setfill('0') << (t + 1) << '_' << safe_file_name(image.words[t]) << ".png";
    files.words.push_back(dir / name.str());
    write_image_rgb(files.words.back(), rendered.words[t]);
  }
  files.figure = dir / "figure.png";
  write_image_rgb(files.figure, rendered.figure);

  if (options.write_video) {
    files.video = dir / "words.avi";
    refuse_overwriting_input(files.video);
    remove_stale_temporaries(files.video);
    // "words.avi.tmp-<pid>.avi": OpenCV picks its writer by the extension, so it must stay last.
    fs::path tmp = files.video;
    tmp += temporary_suffix() + ".avi";
    // Motion JPEG in AVI through OpenCV's own writer (no FFmpeg or GStreamer needed). Frames must
    // keep one size; two frames a second keeps players that dislike very low rates happy.
    const double fps = 2.0;
    const int repeat = std::max(1, static_cast<int>(std::lround(options.video_seconds_per_word * fps)));
    cv::VideoWriter writer;
    try {
      writer.open(tmp.string(), cv::CAP_OPENCV_MJPEG, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), fps,
                  rendered.image.size(), true);
    } catch (const cv::Exception& e) {
      throw OutputError(files.video.string() + ": cannot open a Motion JPEG video writer (" + e.what() + ")");
    }
    if (!writer.isOpened())
      throw OutputError(files.video.string() +
                        ": cannot open a Motion JPEG video writer (OpenCV built without its MJPEG backend, or the "
                        "folder is not writable)");
    try {
      cv::Mat bgr;
      cv::cvtColor(rendered.image, bgr, cv::COLOR_RGB2BGR);
      for (int k = 0; k < repeat; ++k) writer.write(bgr);
      for (const auto& w : rendered.words) {
        cv::cvtColor(w, bgr, cv::COLOR_RGB2BGR);
        for (int k = 0; k < repeat; ++k) writer.write(bgr);
      }
      writer.release();
    } catch (const cv::Exception& e) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw OutputError(files.video.string() + ": " + e.what());
    }
    // OpenCV's writer does not report failed writes (a full disk): the RIFF header's size, which
    // it fills in last, must match what reached the file.
    std::error_code ec;
    const std::uint64_t size = fs::file_size(tmp, ec);
    std::uint64_t riff = 0;
    {
      std::string head;
      try {
        InputFile in(tmp, ExitCode::output);
        head.resize(8);
        head.resize(in.read(head.data(), head.size()));
      } catch (const Error&) {
      }
      if (head.size() == 8 && head.compare(0, 4, "RIFF") == 0)
        for (int i = 7; i >= 4; --i) riff = riff << 8 | static_cast<unsigned char>(head[static_cast<std::size_t>(i)]);
    }
    if (ec || size == 0 || riff + 8 > size) {
      fs::remove(tmp, ec);
      throw OutputError(files.video.string() + ": the video writer could not write the whole video (" +
                        std::to_string(size) + " of " + std::to_string(riff + 8) + " bytes; is the disk full?)");
    }
    publish_file(tmp, files.video);
  }
  return files;
}

OverlayFiles write_overlays(const CaptionedImage& image, const fs::path& dir, const OverlayOptions& options) {
  return write_overlays(image, render_overlays(image, options), dir, options);
}

}  // namespace satcap
