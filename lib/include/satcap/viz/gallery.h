// The HTML gallery of captioned images: one self-contained page where hovering a word of a caption
// shows where the model looked when it wrote it (the overlays of overlay.h). No torch here.
//
//   RenderedOverlays r = render_overlays(ci, opts);   // overlay.h
//   GalleryWriter gallery("out/gallery.html");
//   gallery.add(make_gallery_entry(ci, r));
//   gallery.finish();
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "satcap/viz/overlay.h"

namespace satcap {

class AtomicFile;

// One image in the gallery. The pictures are stored already encoded (JPEG), so that a gallery of
// many images does not hold decoded pixels.
struct GalleryEntry {
  std::string title;                       // usually the image path
  std::string caption;
  double score = 0.0;
  std::vector<Alternative> alternatives;
  std::vector<std::string> words;
  std::string image_jpeg;                  // encoded bytes of the plain image
  std::vector<std::string> word_jpegs;     // encoded bytes of each word's overlay
};

// Encodes the rendered pictures (JPEG, quality 85) for the gallery.
GalleryEntry make_gallery_entry(const CaptionedImage& image, const RenderedOverlays& rendered);

struct GalleryOptions {
  std::string title = "satcap: where each word looked";  // page title and heading
};

// Writes one self-contained HTML page (inline CSS and JS, pictures as data: URIs, no external
// requests): per image its caption and score, the alternatives with scores, and the caption's words;
// hovering, focusing or clicking a word shows that word's overlay in place of the image (click pins
// it; click again or press Escape to unpin). All text is HTML-escaped. At load, a script checks
// that every <img> decoded and sets <body data-images-ok="N/M">. The shown picture carries
// data-showing="image" or the word's index; "gallery.html#word=E-W" opens with word W of entry E
// (both from 0) pinned.
// Written incrementally through an AtomicFile (atomic_file.h) and put in place by finish();
// OutputError naming the path.
class GalleryWriter {
 public:
  explicit GalleryWriter(std::filesystem::path path, GalleryOptions options = {});
  ~GalleryWriter();  // without finish(), the temporary file is removed
  GalleryWriter(const GalleryWriter&) = delete;
  GalleryWriter& operator=(const GalleryWriter&) = delete;

  void add(const GalleryEntry& entry);
  void finish();
  int entries() const { return count_; }

 private:
  void write(const std::string& text);
  std::filesystem::path path_;
  std::unique_ptr<AtomicFile> file_;
  int count_ = 0;
};

// GalleryWriter over all entries at once.
void write_gallery(const std::filesystem::path& path, const std::vector<GalleryEntry>& entries,
                   const GalleryOptions& options = {});

// Text safe inside HTML content and quoted attributes (& < > " ').
std::string html_escape(const std::string& text);

}  // namespace satcap
