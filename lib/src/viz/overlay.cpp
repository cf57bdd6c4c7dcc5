#include "satcap/viz/overlay.h"

#include "satcap/runtime/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <sstream>
#include <stdexcept>

#include "satcap/runtime/error.h"

namespace fs = std::filesystem;

namespace satcap {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

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

std::string encode_jpeg(const cv::Mat& rgb) {
  return encode_image(rgb, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 85}, "gallery picture");
}

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

std::string base64(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                 static_cast<unsigned char>(bytes[i + 2]);
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += table[(v >> 6) & 63];
    out += table[v & 63];
  }
  if (i < bytes.size()) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string format_score(double score) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(3) << score;
  return s.str();
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
  if (o.style != "mask" && o.style != "heat")
    throw UsageError("overlay style must be mask or heat (got '" + o.style + "')");
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
  return o.style == "heat" ? 0.5 : 0.8;
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
  if (options.style == "heat") {
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
    const fs::path tmp = dir / ("words.tmp-" + std::to_string(::getpid()) + ".avi");
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
    std::error_code ec;
    if (!fs::exists(tmp, ec) || fs::file_size(tmp, ec) == 0) {
      fs::remove(tmp, ec);
      throw OutputError(files.video.string() + ": the video writer produced no data");
    }
    fs::rename(tmp, files.video, ec);
    if (ec) {
      fs::remove(tmp, ec);
      throw OutputError(files.video.string() + ": cannot rename into place (" + ec.message() + ")");
    }
  }
  return files;
}

OverlayFiles write_overlays(const CaptionedImage& image, const fs::path& dir, const OverlayOptions& options) {
  return write_overlays(image, render_overlays(image, options), dir, options);
}

// --- gallery ------------------------------------------------------------------------------------

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

GalleryEntry make_gallery_entry(const CaptionedImage& image, const RenderedOverlays& rendered) {
  GalleryEntry e;
  e.title = image.image_path;
  e.caption = image.caption();
  e.score = image.score;
  e.alternatives = image.alternatives;
  e.words = image.words;
  e.image_jpeg = encode_jpeg(rendered.image);
  for (const auto& w : rendered.words) e.word_jpegs.push_back(encode_jpeg(w));
  return e;
}

namespace {

const char* kGalleryStyle = R"(
body { font-family: system-ui, sans-serif; margin: 1.5em; background: #f6f6f6; color: #222; }
h1 { font-size: 1.4em; }
.entry { background: #fff; border-radius: 6px; padding: 1em; margin-bottom: 1.5em;
         box-shadow: 0 1px 3px rgba(0,0,0,.15); display: flex; gap: 1.5em; flex-wrap: wrap; }
.entry .pic img.shown { max-width: 448px; max-height: 448px; display: block; }
.entry .store { display: none; }
.entry .text { flex: 1; min-width: 260px; }
.entry .title { font-size: .85em; color: #666; word-break: break-all; }
.caption { font-size: 1.3em; margin: .5em 0; line-height: 1.8; }
.word { cursor: pointer; padding: .1em .25em; border-radius: 4px; background: #eef; outline: none; }
.word:hover, .word:focus, .word.pinned { background: #335; color: #fff; }
.score { color: #666; font-size: .9em; }
.alternatives { margin-top: .8em; font-size: .95em; }
.alternatives li { margin: .2em 0; }
.hint { font-size: .8em; color: #888; }
)";

const char* kGalleryScript = R"(
(function () {
  function setup(entry) {
    var shown = entry.querySelector('img.shown');
    var plain = shown.getAttribute('src');
    var store = entry.querySelectorAll('.store img');
    var words = entry.querySelectorAll('.word');
    var pinned = -1;
    function show(i) {
      shown.src = i < 0 ? plain : store[i].getAttribute('src');
      shown.dataset.showing = i < 0 ? 'image' : String(i);
    }
    words.forEach(function (w, i) {
      w.addEventListener('mouseenter', function () { show(i); });
      w.addEventListener('focus', function () { show(i); });
      w.addEventListener('mouseleave', function () { show(pinned); });
      w.addEventListener('blur', function () { show(pinned); });
      w.addEventListener('click', function () {
        words.forEach(function (x) { x.classList.remove('pinned'); });
        pinned = pinned === i ? -1 : i;
        if (pinned >= 0) w.classList.add('pinned');
        show(pinned);
      });
      w.addEventListener('keydown', function (ev) {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); w.click(); }
        if (ev.key === 'Escape') { pinned = -1; w.classList.remove('pinned'); show(-1); }
      });
    });
    return words;
  }
  var entries = Array.prototype.map.call(document.querySelectorAll('.entry'), setup);
  // "gallery.html#word=E-W" opens with word W of entry E (both from 0) pinned.
  var m = /^#word=(\d+)-(\d+)$/.exec(location.hash);
  if (m && entries[+m[1]] && entries[+m[1]][+m[2]]) entries[+m[1]][+m[2]].click();
  function check() {
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    document.body.dataset.imagesOk = ok + '/' + imgs.length;
  }
  if (document.readyState === 'complete') check(); else window.addEventListener('load', check);
})();
)";

}  // namespace

GalleryWriter::GalleryWriter(fs::path path, GalleryOptions options) : path_(std::move(path)) {
  ensure_directory(path_.parent_path());
  tmp_ = path_.string() + ".tmp-" + std::to_string(::getpid());
  file_ = std::fopen(tmp_.c_str(), "wb");
  if (!file_) throw OutputError(path_.string() + ": cannot create (" + errno_text(errno) + ")");
  write("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n<title>" +
        html_escape(options.title) + "</title>\n<style>" + kGalleryStyle + "</style>\n</head>\n<body>\n<h1>" +
        html_escape(options.title) + "</h1>\n<p class=\"hint\">Hover over or focus a word to see where the model "
        "looked when it wrote it; click to keep it shown.</p>\n");
}

GalleryWriter::~GalleryWriter() {
  if (file_) {
    std::fclose(file_);
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
}

void GalleryWriter::write(const std::string& text) {
  if (!file_) throw std::logic_error("GalleryWriter: already finished");
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size())
    throw OutputError(path_.string() + ": " + errno_text(errno));
}

void GalleryWriter::add(const GalleryEntry& e) {
  if (e.word_jpegs.size() != e.words.size())
    throw std::invalid_argument("GalleryWriter::add: one overlay per word is needed");
  std::string html = "<section class=\"entry\">\n<div class=\"pic\"><img class=\"shown\" data-showing=\"image\" alt=\"" +
                     html_escape(e.title) + "\" src=\"data:image/jpeg;base64," + base64(e.image_jpeg) +
                     "\">\n<div class=\"store\">";
  for (std::size_t i = 0; i < e.word_jpegs.size(); ++i)
    html += "<img alt=\"\" src=\"data:image/jpeg;base64," + base64(e.word_jpegs[i]) + "\">";
  html += "</div></div>\n<div class=\"text\">\n<div class=\"title\">" + html_escape(e.title) +
          "</div>\n<div class=\"caption\" data-caption=\"" + html_escape(e.caption) + "\">";
  for (std::size_t i = 0; i < e.words.size(); ++i)
    html += "<span class=\"word\" tabindex=\"0\">" + html_escape(e.words[i]) + "</span> ";
  html += "</div>\n<div class=\"score\">score " + format_score(e.score) + "</div>\n";
  if (!e.alternatives.empty()) {
    html += "<ol class=\"alternatives\">\n";
    for (const auto& a : e.alternatives)
      html += "<li><span class=\"alt\">" + html_escape(a.caption) + "</span> <span class=\"score\">(" +
              format_score(a.score) + ")</span></li>\n";
    html += "</ol>\n";
  }
  html += "</div>\n</section>\n";
  write(html);
  ++count_;
}

void GalleryWriter::finish() {
  write(std::string("<script>") + kGalleryScript + "</script>\n</body>\n</html>\n");
  std::FILE* f = file_;
  file_ = nullptr;
  bool ok = std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  int err = errno;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    std::error_code ec;
    fs::remove(tmp_, ec);
    throw OutputError(path_.string() + ": " + errno_text(err));
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    err = errno;
    std::error_code ec;
    fs::remove(tmp_, ec);
    throw OutputError(path_.string() + ": cannot rename into place (" + errno_text(err) + ")");
  }
}

void write_gallery(const fs::path& path, const std::vector<GalleryEntry>& entries, const GalleryOptions& options) {
  GalleryWriter writer(path, options);
  for (const auto& e : entries) writer.add(e);
  writer.finish();
}

}  // namespace satcap
