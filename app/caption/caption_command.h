// `satcap caption` as the command runs it: the inputs expanded, the captions written in the chosen
// format (text, json, coco) to stdout or a file, per-word overlays, the video and the HTML gallery,
// and the exit code. The captioning itself is the library's Captioner (satcap/decode/captioner.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "satcap/decode/captioner.h"
#include "satcap/runtime/option_table.h"
#include "satcap/viz/overlay.h"

namespace satcap {

// The captions' output format: text (PATH<TAB>caption per line; alternatives as indented lines
// "  RANK<TAB>SCORE<TAB>caption"), json (one array, an object per image with words, attention rows
// and grid) or coco ([{"image_id", "caption"}], image_id from the file name, see coco_image_id).
enum class CaptionFormat { text, json, coco };

template <>
struct EnumNames<CaptionFormat> {
  static const std::vector<std::pair<std::string, CaptionFormat>>& table() {
    static const std::vector<std::pair<std::string, CaptionFormat>> t{
        {"text", CaptionFormat::text}, {"json", CaptionFormat::json}, {"coco", CaptionFormat::coco}};
    return t;
  }
};

struct CaptionRunOptions {
  // Image files, folders (searched recursively) and list files (.txt/.lst), see expand_image_inputs.
  std::vector<std::string> inputs;
  // The model and the search.
  CaptionerOptions captioner;
  // Output format.
  CaptionFormat format = CaptionFormat::text;
  // Write the captions to this file (atomically) instead of stdout ("" = stdout).
  std::string out;
  // Per image, a subfolder of this folder with one overlay PNG per word and the figure ("" = none).
  std::string overlay_dir;
  // Drawing of the overlays and the gallery (style, opacity, video, samples).
  OverlayOptions overlay;
  // Draw `samples_per_word` locations per word from alpha_t (the paper's hard-attention figures),
  // mark them on the overlays and list them in the json output. Overrides captioner.samples_per_word.
  bool samples = false;
  int samples_per_word = 1;
  // Write the self-contained HTML gallery here ("" = none).
  std::string html;
  // Compute device ("cpu", "cuda", "cuda:N").
  std::string device = "cpu";
  // No progress on stderr.
  bool quiet = false;
};

// Throws UsageError naming the option.
void validate(const CaptionRunOptions& options);

// The integer COCO-style id in an image's file name: the last run of decimal digits of the stem
// ("COCO_val2014_000000123456.jpg" -> 123456, "000123.png" -> 123, "img_2_v3.jpg" -> 3); nullopt
// when the stem has no digits or the number does not fit in 63 bits.
std::optional<std::int64_t> coco_image_id(const std::filesystem::path& path);

// Runs `satcap caption`: captions every input, writes the captions in the chosen format to `out`
// (or options.out) in input order, the overlays and the gallery; each unreadable image is reported
// on `err` as "error: PATH: reason" and the others go on. Returns 0, or 6 (ExitCode::partial) when
// some images could not be read. Throws UsageError, InputError (no images), ModelError, OutputError
// (an output cannot be written; outputs already complete stay intact, --out and --html are only
// renamed into place when complete).
int run_caption(const CaptionRunOptions& options, std::ostream& out, std::ostream& err);

}  // namespace satcap
