// Drawing where each word looked: the paper's attention figures (Xu et al. 2015, Fig. 2-5).
// For each word of a caption, the attention weights alpha_t over the grid of regions (14x14 = 196
// for the paper's VGG conv5_4) are upsampled smoothly to the image and drawn over it, either as the
// paper's white mask (bright where the model looked) or as a colour heat map. No torch here: the
// caption command copies alpha out of its tensors into a CaptionedImage and calls this library.
//
//   CaptionedImage ci = ...;                       // filled by the caption command
//   OverlayOptions opts;  validate(opts);
//   RenderedOverlays r = render_overlays(ci, opts);
//   OverlayFiles files = write_overlays(ci, r, "out/dog", opts);   // 01_a.png ... figure.png
// The HTML gallery of the rendered overlays is in gallery.h.
#pragma once

#include <opencv2/core/mat.hpp>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "satcap/runtime/option_table.h"

namespace satcap {

// Another caption of the same image (e.g. the other beams), with its score.
struct Alternative {
  std::string caption;
  double score = 0.0;  // the decoder's score (e.g. total log-probability); shown as is
};

// One captioned image, as the caption command hands it over. Plain data, no torch.
struct CaptionedImage {
  std::string image_path;  // shown in the gallery (as text, escaped); not read from disk here
  // CV_8UC3, RGB order: the picture the attention grid covers. If the encoder crops the image,
  // pass the cropped picture (the grid is laid over the whole of this Mat).
  cv::Mat rgb;
  std::vector<std::string> words;          // the caption, one entry per generated word (no <end>)
  std::vector<std::vector<float>> alpha;   // [words][grid_rows * grid_cols], row-major over the grid
  int grid_rows = 14;
  int grid_cols = 14;
  double score = 0.0;                      // score of the caption (e.g. log-probability)
  std::vector<Alternative> alternatives;   // other captions (beams), best first; may be empty
  // Optional, hard attention: for each word, the region indices (row-major) sampled from alpha_t
  // (one or several samples). Empty = none; otherwise one vector per word.
  std::vector<std::vector<int>> sampled;

  std::string caption() const;  // the words joined by spaces
};

// Throws std::invalid_argument (a bug in the caller, not a user error) when the pieces disagree:
// empty or non-CV_8UC3 image, grid not positive, alpha rows not one per word or not rows*cols long,
// sampled neither empty nor one per word, or a sampled index outside the grid.
void validate(const CaptionedImage& image);

// How attention is drawn: mask (the paper: a grey map over the image, bright where it looked) or
// heat (a JET colour map blended over the image).
enum class OverlayStyle { mask, heat };

template <>
struct EnumNames<OverlayStyle> {
  static const std::vector<std::pair<std::string, OverlayStyle>>& table() {
    static const std::vector<std::pair<std::string, OverlayStyle>> t{{"mask", OverlayStyle::mask},
                                                                     {"heat", OverlayStyle::heat}};
    return t;
  }
};

struct OverlayOptions {
  OverlayStyle style = OverlayStyle::mask;
  // Weight of the map over the image, in [0, 1]; -1 = the style's default (mask 0.8 as in the
  // paper's notebook, heat 0.5).
  double opacity = -1.0;
  // Gaussian smoothing of the upsampled map, in grid cells. The paper's notebook used
  // pyramid_expand(upscale=16, sigma=20) on a 224 image, i.e. 20/16 = 1.25 cells; 0 = no smoothing.
  double sigma_cells = 1.25;
  // Per-word images and the gallery: the image is scaled so that its longer side is this many
  // pixels (0 = keep the image's own size).
  int max_side = 448;
  // The figure: longer side of each tile in pixels.
  int tile_size = 224;
  // The figure: tiles per row (the image itself is the first tile) before wrapping.
  int tiles_per_row = 6;
  // Write the word on each overlay (outlined text scaled to the image).
  bool label_words = true;
  // Hard attention: mark the sampled regions (small circles at the regions' centres).
  bool draw_samples = true;
  // Also write words.avi (Motion JPEG, OpenCV's built-in writer) stepping through the words.
  bool write_video = false;
  // Video: seconds each word is shown (the plain image is shown first for the same time).
  double video_seconds_per_word = 1.0;
};

// Throws UsageError naming the option ("overlay opacity must be in [0, 1] or -1 ... (got 1.5)").
void validate(const OverlayOptions& options);

// The opacity actually used (resolves -1 to the style's default).
double effective_opacity(const OverlayOptions& options);

// The attention alpha (rows*cols weights, row-major) as a smooth map over an image of `size`:
// bilinear upsampling of the grid to the image, then a Gaussian blur with sigma = sigma_cells grid
// cells (separately in x and y, so non-square images work), border reflected, as skimage's
// pyramid_expand does. Returns CV_32F of `size`, divided by its maximum so that values lie in
// [0, 1] with the peak at 1 (matplotlib's imshow stretched min..max; only the offset differs).
// Negative or non-finite weights count as 0; an all-zero alpha gives an all-zero map.
// Throws std::invalid_argument when alpha.size() != rows*cols or a size is not positive.
cv::Mat attention_map(const std::vector<float>& alpha, int rows, int cols, cv::Size size,
                      double sigma_cells = 1.25);

// The map drawn over the RGB image (same size, CV_8UC3 RGB), per options.style:
//   mask: out = (1 - o) * image + o * 255 * map   (plt.imshow(img); plt.imshow(map, cmap=gray, alpha=o))
//   heat: out = (1 - o) * image + o * jet(map)
cv::Mat draw_attention(const cv::Mat& rgb, const cv::Mat& map, const OverlayOptions& options);

// Writes `text` at the top-left of an RGB image in white with a black outline, scaled to the
// image's width. Characters outside ASCII are drawn as '?'.
void draw_label(cv::Mat& rgb, const std::string& text);

// Everything drawn for one image, in memory (all CV_8UC3 RGB).
struct RenderedOverlays {
  cv::Mat image;               // the image, scaled to options.max_side
  std::vector<cv::Mat> words;  // one overlay per word, same size as `image`, labelled
  cv::Mat figure;              // the image followed by one tile per word, wrapped in rows
};

// Validates `image` and draws its overlays and figure.
RenderedOverlays render_overlays(const CaptionedImage& image, const OverlayOptions& options);

// A word as a file-name fragment: ASCII letters, digits, '-' and '_' kept, anything else
// (spaces, '/', '.', non-ASCII bytes) becomes '_', at most 40 characters; never empty ("word").
std::string safe_file_name(const std::string& word);

// Files written for one image.
struct OverlayFiles {
  std::vector<std::filesystem::path> words;  // dir/NN_word.png, NN = word number from 01
  std::filesystem::path figure;              // dir/figure.png
  std::filesystem::path video;               // dir/words.avi, empty unless options.write_video
};

// Writes the rendered overlays into `dir` (created if missing): one PNG per word, figure.png and,
// if asked, words.avi. Files are written atomically (temporary file, fsync, rename). Throws
// OutputError naming the folder or file that could not be created or written (also when no video
// writer could be opened).
OverlayFiles write_overlays(const CaptionedImage& image, const RenderedOverlays& rendered,
                            const std::filesystem::path& dir, const OverlayOptions& options);
// render_overlays + write_overlays.
OverlayFiles write_overlays(const CaptionedImage& image, const std::filesystem::path& dir,
                            const OverlayOptions& options);

// Writes an RGB image as PNG (or JPEG, by extension) atomically; OutputError naming the path.
void write_image_rgb(const std::filesystem::path& path, const cv::Mat& rgb);

}  // namespace satcap
