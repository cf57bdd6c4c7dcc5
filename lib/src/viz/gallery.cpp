// The HTML gallery (see gallery.h): one self-contained page, written entry by entry, with the
// pictures as base64 data: URIs and a small inline script that swaps in each word's overlay.
#include "satcap/viz/gallery.h"

#include <iomanip>
#include <sstream>
#include <stdexcept>

#include <opencv2/imgcodecs.hpp>

#include "satcap/runtime/atomic_file.h"
#include "satcap/runtime/error.h"
#include "viz/output_files.h"

namespace fs = std::filesystem;

namespace satcap {
namespace {

std::string encode_jpeg(const cv::Mat& rgb) {
  return encode_image(rgb, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 85}, "gallery picture");
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
  file_ = std::make_unique<AtomicFile>(path_, ParentDirs::must_exist);
  write("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n<title>" +
        html_escape(options.title) + "</title>\n<style>" + kGalleryStyle + "</style>\n</head>\n<body>\n<h1>" +
        html_escape(options.title) + "</h1>\n<p class=\"hint\">Hover over or focus a word to see where the model "
        "looked when it wrote it; click to keep it shown.</p>\n");
}

GalleryWriter::~GalleryWriter() = default;

void GalleryWriter::write(const std::string& text) {
  if (!file_) throw std::logic_error("GalleryWriter: already finished");
  file_->write(text);
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
  std::unique_ptr<AtomicFile> file = std::move(file_);
  file->commit();
}

void write_gallery(const fs::path& path, const std::vector<GalleryEntry>& entries, const GalleryOptions& options) {
  GalleryWriter writer(path, options);
  for (const auto& e : entries) writer.add(e);
  writer.finish();
}

}  // namespace satcap
