#include "compare/compare.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "satcap/data/dataset.h"
#include "satcap/data/feature_store.h"
#include "satcap/data/image.h"
#include "satcap/data/prepare.h"
#include "satcap/data/scenes.h"
#include "satcap/decode/captioner.h"
#include "satcap/eval/evaluate.h"
#include "satcap/eval/metrics.h"
#include "satcap/eval/pointing.h"
#include "satcap/model/bundle.h"
#include "satcap/model/encoder.h"
#include "satcap/runtime/error.h"
#include "satcap/train/run_training.h"
#include "satcap/viz/overlay.h"

namespace satcap {
namespace fs = std::filesystem;
using nlohmann::json;

void validate(const CompareOptions& o) {
  auto bad = [](const std::string& what) { throw UsageError(what); };
  if (o.out.empty()) bad("--out must name a folder");
  if (o.data.empty() && o.scenes_images < 10)
    bad("--scenes must be at least 10 (one image in ten is a test image; got " + std::to_string(o.scenes_images) + ")");
  if (o.encoder.empty()) bad("--encoder must not be empty");
  if (o.min_word_count < 1) bad("--min-word-count must be at least 1 (got " + std::to_string(o.min_word_count) + ")");
  o.search.validate("--");
  if (o.max_eval_images < 0) bad("--max-images must be 0 (all) or more (got " + std::to_string(o.max_eval_images) + ")");
  if (!o.train.is_object()) bad("training options must be a JSON object");
  if (o.train.contains("attention") || (o.train.contains("decoder") && o.train["decoder"].contains("attention")))
    bad("training options: the decoder's \"attention\" is set by compare (soft, then hard)");
  if (o.train.value("resume", false)) bad("training options: \"resume\" cannot be used by compare");
  validate(train_options_from_json(o.train, TrainOptions{}, "training options"));
}

CompareOptions quick_compare_options(const CompareOptions& options) {
  CompareOptions q = options;
  q.scenes_images = 150;
  json t = {{"epochs", 4},
            {"max_steps", 60},
            {"batch_size", 32},
            {"decoder", {{"embed_dim", 64}, {"attention_dim", 64}, {"hidden_dim", 64}}},
            {"lr", 2e-3},
            {"val_max_images", 15},
            {"val_every", 1},
            {"checkpoint_every", 0},
            {"log_every", 10},
            {"validation", {{"max_length", 20}}}};
  t.merge_patch(options.train);
  q.train = t;
  q.min_word_count = 1;
  q.search.beam_size = 1;
  q.search.max_length = 20;
  return q;
}

namespace {

std::string format_seconds(double s) {
  if (!std::isfinite(s) || s < 0) return "-";
  std::ostringstream out;
  const long total = std::lround(s);
  if (total >= 3600) out << total / 3600 << " h " << std::setw(2) << std::setfill('0') << (total % 3600) / 60 << " min";
  else if (total >= 60) out << total / 60 << " min " << std::setw(2) << std::setfill('0') << total % 60 << " s";
  else out << std::fixed << std::setprecision(1) << s << " s";
  return out.str();
}

std::string cell(const json& m, const std::string& key, double scale, int digits, const std::string& suffix = "") {
  if (!m.contains(key) || !m[key].is_number()) return "-";
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << m[key].get<double>() * scale << suffix;
  return out.str();
}

// Reads a JSON file written by an earlier run (nullopt when absent or unreadable).
std::optional<json> read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  try {
    return json::parse(in);
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

// The attention figure of one model on one image, with a title band above it.
cv::Mat titled_figure(const std::string& model_dir, const std::string& title, const cv::Mat& rgb,
                      const SearchOptions& search, bool samples, c10::Device device) {
  CaptionerOptions co;
  co.model = model_dir;
  co.search = search;
  co.search.alternatives = 1;
  co.samples_per_word = samples ? 1 : 0;
  Captioner captioner(co, device);
  std::vector<ImageCaption> r = captioner.caption_images({rgb}, true);
  CaptionedImage ci = r.at(0).to_captioned_image();
  OverlayOptions oo;
  const RenderedOverlays rendered = render_overlays(ci, oo);
  const std::string text = title + ": " + ci.caption();
  cv::Mat band(44, rendered.figure.cols, CV_8UC3, cv::Scalar(255, 255, 255));
  std::string ascii;
  for (unsigned char ch : text) ascii.push_back(ch < 0x80 && ch >= 0x20 ? static_cast<char>(ch) : '?');
  double scale = 0.7;
  int baseline = 0;
  while (scale > 0.3 && cv::getTextSize(ascii, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &baseline).width > band.cols - 16)
    scale -= 0.05;
  cv::putText(band, ascii, cv::Point(8, 29), cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  cv::Mat out;
  cv::vconcat(band, rendered.figure, out);
  return out;
}

cv::Mat pad_to_width(const cv::Mat& m, int width) {
  if (m.cols >= width) return m;
  cv::Mat out;
  cv::copyMakeBorder(m, out, 0, 0, 0, width - m.cols, cv::BORDER_CONSTANT, cv::Scalar(255, 255, 255));
  return out;
}

}  // namespace

std::string compare_table_markdown(const json& soft, const json& hard) {
  std::ostringstream md;
  md << "| attention | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | ROUGE-L | CIDEr | pointing (chance) | attention entropy | "
        "training time |\n";
  md << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& [name, m] : {std::pair<std::string, const json&>{"soft", soft}, {"hard", hard}}) {
    md << "| " << name;
    for (const auto& key : metric_names()) md << " | " << cell(m, key, 100.0, 1);
    md << " | " << cell(m, "pointing", 100.0, 1, "%") << " (" << cell(m, "pointing_chance", 100.0, 1, "%") << ")";
    md << " | " << cell(m, "attention_entropy", 1.0, 2) << " | "
       << format_seconds(m.value("training_seconds", -1.0)) << " |\n";
  }
  const json& ref = soft.is_object() ? soft : hard;
  md << "\n" << ref.value("images", 0) << " test images, beam " << ref.value("beam", 0)
     << "; BLEU, ROUGE-L and CIDEr x100 (as the paper prints them). Pointing: the share of generated words naming an "
        "object in the image whose most attended cell (its centre) lies in a box of that object; chance: the share "
        "of cells inside those boxes. Attention entropy: mean H(alpha_t) in nats";
  if (ref.contains("attention_entropy_max") && ref["attention_entropy_max"].is_number())
    md << " (uniform attention: " << cell(ref, "attention_entropy_max", 1.0, 2) << ")";
  md << ". Training time: the training loop's wall time (features prepared once, shared).\n";
  return md.str();
}

CompareReport run_compare(const CompareOptions& o, c10::Device device, std::ostream& err, bool quiet) {
  validate(o);
  auto say = [&](const std::string& line) {
    if (!quiet) err << "compare: " << line << "\n";
  };
  const fs::path out(o.out);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec || !fs::is_directory(out)) throw OutputError(o.out + ": cannot create the output folder");

  // 1. The data.
  std::string data = o.data;
  if (data.empty()) {
    const fs::path scenes = out / "scenes";
    if (fs::exists(scenes / "captions.json")) {
      say("reusing the scenes in " + scenes.string());
    } else {
      SceneOptions so;
      so.out_dir = scenes.string();
      so.images = o.scenes_images;
      so.seed = o.scenes_seed;
      so.objects = o.scenes_objects;
      so.force = true;  // an interrupted earlier generation (no captions.json yet) is replaced
      say("generating " + std::to_string(o.scenes_images) + " scenes into " + scenes.string());
      generate_scenes(so);
    }
    data = scenes.string();
  }
  const Dataset dataset = load_dataset(data);

  // 2. One feature store for both models (a finished store is only checked: prepare_features
  // resumes, encoding only the rows not written yet, and refuses another encoder's or dataset's store).
  const fs::path store = out / "features";
  {
    EncoderOptions eo;
    eo.source = o.encoder;
    std::unique_ptr<Encoder> encoder = load_encoder(eo);
    encoder->to(device);
    encoder->train(false);
    PrepareOptions po;
    if (!quiet)
      po.progress = [&err](std::size_t done, std::size_t total) {
        err << "\rcompare: preparing features " << done << "/" << total << std::flush;
      };
    const PrepareSummary ps = prepare_features(dataset, *encoder, store.string(), po);
    if (!quiet) err << "\n";
    if (ps.already > 0) say("reused " + std::to_string(ps.already) + " prepared images from " + store.string());
    for (const auto& f : ps.failures) err << "warning: " << f << " (image left out)\n";
  }

  // 3. and 4. Train and evaluate each attention.
  json rows = json::object();
  for (const AttentionKind kind : {AttentionKind::soft, AttentionKind::hard}) {
    if (!runs_attention(o.attention, kind)) continue;
    const std::string attention = enum_name(kind);
    const fs::path run = out / attention;
    const fs::path done_file = run / "compare_training.json";
    json training;
    json t = o.train;
    t["decoder"]["attention"] = attention;
    const TrainOptions to = train_options_from_json(t, TrainOptions{}, "training options");
    // A finished run with the same options and data is reused. Its options are read back through
    // today's parser, so that options added to satcap since then count at their defaults.
    const auto previous = read_json_file(done_file);
    json earlier_options;  // null: no finished run, or one whose options no longer parse
    if (previous) {
      try {
        earlier_options = to_json(train_options_from_json(previous->value("options", json::object()), TrainOptions{},
                                                          done_file.string()));
      } catch (const std::exception&) {
      }
    }
    const bool same_data = previous && previous->value("data", std::string()) == data &&
                           previous->value("min_word_count", 0) == o.min_word_count;
    if (!o.retrain && same_data && earlier_options == to_json(to) && fs::exists(run / "model" / "config.json")) {
      say("reusing the trained " + attention + " model in " + run.string() + " (--retrain to train again)");
      training = *previous;
    } else {
      // A finished run of the same options and data but fewer epochs is continued from its
      // checkpoint instead of trained again: --resume gives the weights of training straight
      // through (tests/test_trainer.cpp), so this saves only time. Its training time is the sum.
      json earlier;
      if (!o.retrain && same_data && earlier_options.is_object() && fs::exists(run / "checkpoint.pt")) {
        json a = earlier_options;
        json b = to_json(to);
        const int earlier_epochs = a.value("epochs", 0);
        a.erase("epochs");
        b.erase("epochs");
        if (a == b && earlier_epochs < to.epochs) earlier = *previous;
      }
      TrainOptions train_options = to;
      if (earlier.is_object()) {
        train_options.resume = true;
        say("continuing the " + attention + "-attention run in " + run.string() + " from epoch " +
            std::to_string(earlier.value("epochs_completed", 0)) + " to " + std::to_string(to.epochs));
      } else if (fs::exists(run) && !fs::is_empty(run, ec) && !o.retrain) {
        // Nothing already trained is thrown away without being asked.
        throw UsageError(run.string() + " holds a " + attention +
                         "-attention run with other options or data, or an unfinished one; --retrain replaces "
                         "it, or choose another --out");
      } else {
        fs::remove_all(run, ec);
      }
      TrainCommandOptions tc;
      tc.data = data;
      tc.out = run.string();
      tc.features = store.string();
      tc.encoder = o.encoder;
      tc.min_word_count = o.min_word_count;
      tc.eval_test = false;  // the evaluation below does it, with the chosen beam
      say("training the " + attention + "-attention model into " + run.string());
      const auto t0 = std::chrono::steady_clock::now();
      const TrainSummary s = run_training(tc, train_options, device, quiet);
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double seconds_before = earlier.is_object() ? earlier.value("training_seconds", 0.0) : 0.0;
      const double wall_before = earlier.is_object() ? earlier.value("training_wall_seconds", 0.0) : 0.0;
      training = {{"training_seconds", seconds_before + s.seconds},
                  {"training_wall_seconds", wall_before + wall},
                  {"steps", s.steps},
                  {"epochs_completed", s.epochs_completed},
                  {"best_val_bleu4", s.best_bleu4},
                  {"options", to_json(to)},
                  {"data", data},
                  {"min_word_count", o.min_word_count}};
      if (earlier.is_object()) training["continued_from_epochs"] = earlier.value("epochs_completed", 0);
      write_file_atomic(done_file, training.dump(1) + "\n");
    }
    EvalOptions eo;
    eo.model = run.string();
    eo.data = data;
    eo.split = "test";
    eo.features = store.string();
    eo.search = o.search;
    eo.out = (run / "eval").string();
    eo.per_word = true;
    eo.max_images = o.max_eval_images;
    say("evaluating the " + attention + "-attention model on the test split");
    EvalReport r = run_evaluation(eo, device, err, quiet);
    json row = r.metrics;
    row.update(training);
    rows[attention] = row;
  }

  CompareReport report;
  report.table = rows;
  if (o.attention != AttentionRuns::both) return report;  // one run: its eval/metrics.json, no table, no figure
  report.markdown = compare_table_markdown(rows["soft"], rows["hard"]);
  write_file_atomic(out / "compare.json", rows.dump(1) + "\n");
  write_file_atomic(out / "compare.md", report.markdown);

  // 5. One test image under both models.
  std::vector<const ImageEntry*> test = dataset.split("test");
  const ImageEntry* chosen = nullptr;
  if (o.image_id >= 0) {
    chosen = dataset.find(o.image_id);
    if (!chosen) throw UsageError("--image " + std::to_string(o.image_id) + ": no such image in " + data);
  } else if (!test.empty()) {
    chosen = test.front();
    // The test image with the most objects, when the boxes are known (a richer figure).
    const fs::path inst = fs::is_directory(data) ? fs::path(data) / "instances.json" : fs::path(data).parent_path() / "instances.json";
    if (fs::exists(inst)) {
      const Instances instances = load_instances(inst);
      std::size_t most = 0;
      for (const ImageEntry* e : test) {
        auto it = instances.images.find(e->id);
        const std::size_t n = it == instances.images.end() ? 0 : it->second.boxes.size();
        if (n > most) {
          most = n;
          chosen = e;
        }
      }
    }
  }
  if (chosen) {
    try {
      const cv::Mat rgb = read_image_rgb(chosen->path);
      cv::Mat soft = titled_figure((out / "soft").string(), "soft attention", rgb, o.search, false, device);
      cv::Mat hard = titled_figure((out / "hard").string(), "hard attention", rgb, o.search, true, device);
      const int width = std::max(soft.cols, hard.cols);
      cv::Mat gap(12, width, CV_8UC3, cv::Scalar(255, 255, 255));
      cv::Mat both;
      cv::vconcat(std::vector<cv::Mat>{pad_to_width(soft, width), gap, pad_to_width(hard, width)}, both);
      report.figure = (out / "attention_soft_vs_hard.png").string();
      write_image_rgb(report.figure, both);
      say("wrote " + report.figure + " (test image " + chosen->key + ")");
    } catch (const InputError& e) {
      err << "warning: no figure: " << e.what() << "\n";
    }
  }
  return report;
}

}  // namespace satcap
