#include "caption/caption_command.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <iomanip>
#include <memory>
#include <set>
#include <sstream>

#include "satcap/data/image.h"
#include "satcap/model/bundle.h"
#include "satcap/runtime/atomic_file.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "satcap/runtime/runtime.h"
#include "satcap/viz/gallery.h"
#include "satcap/viz/overlay.h"

namespace fs = std::filesystem;

namespace satcap {

void validate(const CaptionRunOptions& o) {
  validate(o.captioner);
  if (o.inputs.empty()) throw UsageError("caption: give at least one image, folder or list file");
  validate(o.overlay);
  if (o.overlay.write_video && o.overlay_dir.empty()) throw UsageError("--video needs --overlay-dir (the video is written there)");
  if (o.samples && (o.samples_per_word < 1 || o.samples_per_word > 1000))
    throw UsageError("--samples-per-word must be between 1 and 1000 (got " + std::to_string(o.samples_per_word) + ")");
}

std::optional<std::int64_t> coco_image_id(const fs::path& path) {
  const std::string stem = path.stem().string();
  std::size_t end = stem.size();
  while (end > 0 && !std::isdigit(static_cast<unsigned char>(stem[end - 1]))) --end;
  if (end == 0) return std::nullopt;
  std::size_t begin = end;
  while (begin > 0 && std::isdigit(static_cast<unsigned char>(stem[begin - 1]))) --begin;
  std::string digits = stem.substr(begin, end - begin);
  digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size() - 1));  // keep one digit of "000"
  if (digits.size() > 18) return std::nullopt;
  return static_cast<std::int64_t>(std::stoll(digits));
}

namespace {

// Where the captions go: stdout (streamed) or a file written through an AtomicFile and put in
// place by finish(), so an interrupted run never leaves a half-written file under the real name.
class CaptionOutput {
 public:
  CaptionOutput(const std::string& path, std::ostream& stream) : stream_(stream) {
    if (!path.empty()) file_ = std::make_unique<AtomicFile>(path);
  }
  void write(const std::string& text) {
    if (file_) return file_->write(text);
    stream_ << text;
    stream_.flush();
    if (!stream_) throw OutputError("standard output: cannot write");
  }
  void finish() {
    if (file_) file_->commit();
  }

 private:
  std::ostream& stream_;
  std::unique_ptr<AtomicFile> file_;
};

// Paths in the text format: a tab or a line break would break the line structure.
std::string text_field(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\t') out += "\\t";
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else out += c;
  }
  return out;
}

std::string format_score(double score) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(4) << score;
  return s.str();
}

// Creates `dir` and checks that a file can be created in it; OutputError naming it otherwise.
void require_writable_dir(const fs::path& dir, const std::string& option) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw OutputError(dir.string() + ": cannot create the " + option + " folder: " + (ec ? ec.message() : "not a folder"));
  try {
    AtomicFile probe(dir / ".satcap-probe");  // created and, uncommitted, removed again
  } catch (const OutputError& e) {
    throw OutputError(dir.string() + ": cannot write into the " + option + " folder: " +
                      std::string(e.what()).substr((dir / ".satcap-probe").string().size() + 2));
  }
}

}  // namespace

int run_caption(const CaptionRunOptions& options_in, std::ostream& out, std::ostream& err) {
  CaptionRunOptions options = options_in;
  validate(options);
  options.captioner.samples_per_word = options.samples ? options.samples_per_word : 0;
  options.overlay.draw_samples = options.samples;
  const c10::Device device = parse_device(options.device);

  std::vector<fs::path> paths = expand_image_inputs(options.inputs);
  if (paths.empty()) throw InputError("no images found in the inputs given (image extensions: jpg, jpeg, png, bmp, webp, tif, tiff)");

  // No output may replace an input of the run: an image, a list file, a file of the model.
  ProtectedInputs inputs;
  inputs.add(paths, "the input image");
  for (const auto& input : options.inputs) inputs.add(fs::path(input), "the input");
  const fs::path model_dir = resolve_bundle_dir(options.captioner.model.empty() ? default_model_dir()
                                                                                : fs::path(options.captioner.model));
  std::error_code model_ec;
  for (fs::directory_iterator it(model_dir, model_ec), end; !model_ec && it != end; it.increment(model_ec))
    inputs.add(it->path(), "a file of the model");
  if (!options.out.empty()) refuse_overwriting_input(options.out, "--out");
  if (!options.html.empty()) refuse_overwriting_input(options.html, "--html");
  if (!options.out.empty() && !options.html.empty() &&
      fs::weakly_canonical(options.out) == fs::weakly_canonical(options.html))
    throw UsageError("--out and --html name the same file " + options.out + "; give each its own");

  // Outputs that can be checked before the model runs are checked first.
  const bool overlays = !options.overlay_dir.empty();
  if (overlays) require_writable_dir(options.overlay_dir, "--overlay-dir");
  std::unique_ptr<GalleryWriter> gallery;
  if (!options.html.empty()) {
    std::error_code ec;
    fs::path html = options.html;
    if (html.has_parent_path()) fs::create_directories(html.parent_path(), ec);
    gallery = std::make_unique<GalleryWriter>(html);
  }
  CaptionOutput sink_out(options.out, out);

  Captioner captioner(options.captioner, device);
  if (!options.quiet) {
    err << "satcap caption: " << paths.size() << " image" << (paths.size() == 1 ? "" : "s") << ", model "
        << captioner.model_dir().string() << " (" << (captioner.hard_attention() ? "hard" : "soft") << " attention), beam "
        << options.captioner.search.beam_size << "\n";
  }

  const bool keep_images = overlays || gallery != nullptr;
  std::set<std::string> used_dirs;
  bool first = true;
  if (options.format != CaptionFormat::text) sink_out.write("[");
  auto sink = [&](ImageCaption& r) {
    if (!r.ok()) {
      err << "error: " << r.error << "\n";
      return;
    }
    fs::path overlay_subdir;
    if (keep_images) {
      CaptionedImage ci = r.to_captioned_image();
      RenderedOverlays rendered = render_overlays(ci, options.overlay);
      if (overlays) {
        std::string base = safe_file_name(r.path.stem().string());
        std::string name = base;
        for (int k = 2; used_dirs.count(name) != 0; ++k) name = base + "-" + std::to_string(k);
        used_dirs.insert(name);
        overlay_subdir = fs::path(options.overlay_dir) / name;
        write_overlays(ci, rendered, overlay_subdir, options.overlay);
      }
      if (gallery) gallery->add(make_gallery_entry(ci, rendered));
    }
    const std::string image = r.path.string();
    if (options.format == CaptionFormat::text) {
      std::string line = text_field(image) + "\t" + r.caption() + "\n";
      if (options.captioner.search.alternatives > 1) {
        line += "  1\t" + format_score(r.score) + "\t" + r.caption() + "\n";
        for (std::size_t k = 0; k < r.alternatives.size(); ++k)
          line += "  " + std::to_string(k + 2) + "\t" + format_score(r.alternatives[k].score) + "\t" +
                  r.alternatives[k].caption + "\n";
      }
      sink_out.write(line);
      return;
    }
    nlohmann::json j;
    if (options.format == CaptionFormat::coco) {
      auto id = coco_image_id(r.path);
      j["image_id"] = id ? *id : static_cast<std::int64_t>(r.index);
      j["caption"] = r.caption();
    } else {
      j["image"] = image;
      j["caption"] = r.caption();
      j["score"] = r.score;
      j["log_prob"] = r.log_prob;
      j["finished"] = r.finished;
      j["words"] = r.words;
      j["attention"] = r.alpha;
      j["grid"] = {r.grid_rows, r.grid_cols};
      if (options.captioner.search.alternatives > 1) {
        nlohmann::json alts = nlohmann::json::array();
        alts.push_back({{"caption", r.caption()}, {"score", r.score}});
        for (const auto& a : r.alternatives) alts.push_back({{"caption", a.caption}, {"score", a.score}});
        j["alternatives"] = alts;
      }
      if (options.samples) j["samples"] = r.sampled;
      if (overlays) j["overlays"] = overlay_subdir.string();
    }
    sink_out.write(std::string(first ? "\n" : ",\n") + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    first = false;
  };
  auto progress = [&](std::size_t done, std::size_t total) {
    if (!options.quiet && total > static_cast<std::size_t>(options.captioner.batch_size)) err << "satcap caption: " << done << "/" << total << " images\n";
  };
  Captioner::FileSummary summary = captioner.caption_files(paths, sink, keep_images, progress);
  if (options.format != CaptionFormat::text) sink_out.write(first ? "]\n" : "\n]\n");
  sink_out.finish();
  if (gallery) gallery->finish();

  const std::size_t done = summary.images - summary.failed;
  if (!options.quiet) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(2) << "satcap caption: captioned " << done << " of " << summary.images
      << " images in " << summary.seconds << " s (" << (summary.seconds > 0 ? done / summary.seconds : 0.0)
      << " images/s; encoder " << summary.encode_seconds << " s, search " << summary.search_seconds
      << " s, waiting for images " << summary.wait_seconds << " s)";
    if (summary.failed > 0) s << "; " << summary.failed << " could not be read";
    err << s.str() << "\n";
    if (!options.out.empty()) err << "  captions: " << options.out << "\n";
    if (overlays) err << "  overlays: " << options.overlay_dir << "/\n";
    if (gallery) err << "  gallery:  " << options.html << "\n";
  }
  return summary.failed > 0 ? static_cast<int>(ExitCode::partial) : 0;
}

}  // namespace satcap
