#include "satcap/eval/evaluate.h"

#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <iostream>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>

#include "satcap/data/dataset.h"
#include "satcap/data/feature_store.h"
#include "satcap/decode/captioner.h"
#include "satcap/decode/search.h"
#include "satcap/eval/metrics.h"
#include "satcap/eval/pointing.h"
#include "satcap/model/bundle.h"
#include "satcap/model/decoder.h"
#include "satcap/model/vocab.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"

namespace satcap {
namespace fs = std::filesystem;
using nlohmann::json;

void validate(const EvalOptions& o) {
  auto bad = [](const std::string& what) { throw UsageError(what); };
  if (o.data.empty()) bad("--data must name a dataset (file or folder)");
  if (o.split.empty()) bad("--split must not be empty");
  o.search.validate("--");
  if (o.batch_size < 1) bad("--batch must be at least 1 (got " + std::to_string(o.batch_size) + ")");
  if (o.max_images < 0) bad("--max-images must be 0 (all) or more (got " + std::to_string(o.max_images) + ")");
  if (o.out.empty()) bad("--out must name a folder");
}

namespace {

// One image's decoding, whatever the source.
struct Decoded {
  std::string error;  // non-empty: failed ("PATH: reason")
  std::vector<std::string> words;
  std::vector<std::vector<float>> alpha;  // [words][rows * cols]
  int rows = 0, cols = 0;
  int width = 0, height = 0;  // of the decoded image (0 when decoded from features)
};

// The instances file for `data` when none is given: instances.json in the dataset folder or beside
// the dataset file, or instances_NAME.json beside a COCO captions_NAME.json.
std::optional<fs::path> find_instances(const std::string& data) {
  const fs::path p(data);
  std::error_code ec;
  std::vector<fs::path> candidates;
  if (fs::is_directory(p, ec)) {
    candidates.push_back(p / "instances.json");
  } else {
    const std::string name = p.filename().string();
    if (name.rfind("captions_", 0) == 0) candidates.push_back(p.parent_path() / ("instances_" + name.substr(9)));
    candidates.push_back(p.parent_path() / "instances.json");
  }
  for (const auto& c : candidates) {
    if (fs::is_regular_file(c, ec)) return c;
  }
  return std::nullopt;
}

// The grid of a describe() JSON ("grid": [rows, cols]); else a square grid of n regions, else 1 x n.
std::pair<int, int> grid_of(const json& description, int regions) {
  if (description.is_object() && description.contains("grid") && description["grid"].is_array() &&
      description["grid"].size() == 2 && description["grid"][0].is_number_integer() &&
      description["grid"][1].is_number_integer()) {
    const int r = description["grid"][0].get<int>(), c = description["grid"][1].get<int>();
    if (r > 0 && c > 0 && r * c == regions) return {r, c};
  }
  const int s = static_cast<int>(std::lround(std::sqrt(static_cast<double>(regions))));
  if (s * s == regions) return {s, s};
  return {1, regions};
}

std::vector<std::vector<float>> alpha_rows(const at::Tensor& alphas, std::size_t words, int64_t n) {
  std::vector<std::vector<float>> rows;
  if (words == 0) return rows;
  at::Tensor a = alphas.to(at::kCPU, at::kFloat).contiguous();  // [len, n]
  if (a.dim() != 2 || a.size(0) != static_cast<int64_t>(words) || a.size(1) != n)
    throw ModelError("the search returned attention rows that do not match the caption (" + std::to_string(words) +
                     " words, " + std::to_string(n) + " regions)");
  const float* p = a.data_ptr<float>();
  for (int64_t t = 0; t < a.size(0); ++t) rows.emplace_back(p + t * n, p + (t + 1) * n);
  return rows;
}

// Decodes from a prepared feature store: the bundle and the batched search, no encoder.
void decode_features(const EvalOptions& o, const std::vector<const ImageEntry*>& entries, c10::Device device,
                     std::vector<Decoded>& out, const std::function<void(std::size_t)>& progress, json& info) {
  FeatureStore store = FeatureStore::open(o.features);
  {  // the features must be these images': a store of another data set under the same names is refused
    std::vector<std::pair<std::size_t, fs::path>> rows;
    for (const ImageEntry* e : entries)
      if (auto row = store.row_of(e->key)) rows.emplace_back(*row, e->path);
    require_current_sources(store, rows, [](const std::string& w) { std::cerr << "warning: " << w << "\n"; });
  }
  const fs::path model_dir = o.model.empty() ? default_model_dir() : fs::path(o.model);
  if (o.model.empty() && !fs::exists(model_dir))
    throw ModelError(model_dir.string() + ": the default model is missing; run tools/setup.sh or pass --model DIR");
  Bundle bundle = load_bundle(model_dir, store.encoder_identity(), device);
  const DecoderOptions& d = bundle.decoder_options;
  if (store.dim() != d.feature_dim)
    throw ModelError(o.features + ": features of dimension " + std::to_string(store.dim()) + ", the model " +
                     bundle.dir.string() + " takes " + std::to_string(d.feature_dim));
  if (d.regions != 0 && store.regions() != d.regions)
    throw ModelError(o.features + ": " + std::to_string(store.regions()) + " regions per image, the model " +
                     bundle.dir.string() + " takes " + std::to_string(d.regions));
  const auto [rows, cols] = grid_of(store.encoder_description(), store.regions());
  info["model"] = bundle.dir.string();
  info["attention"] = enum_name(d.attention);

  SearchOptions so = o.search;
  so.alternatives = 1;
  SearchTokens tokens;
  tokens.start = Vocabulary::start_id;
  tokens.end = Vocabulary::end_id;
  tokens.banned = {Vocabulary::pad_id, Vocabulary::start_id, Vocabulary::unk_id};
  at::manual_seed(o.seed);
  bundle.decoder->eval();

  std::size_t done = 0;
  for (std::size_t first = 0; first < entries.size(); first += static_cast<std::size_t>(o.batch_size)) {
    const std::size_t last = std::min(entries.size(), first + static_cast<std::size_t>(o.batch_size));
    std::vector<int64_t> batch_rows;
    std::vector<std::size_t> batch_index;
    for (std::size_t i = first; i < last; ++i) {
      const auto row = store.row_of(entries[i]->key);
      if (!row || store.state(*row) != RowState::written) {
        out[i].error = entries[i]->key + ": no features in " + o.features +
                       (row ? " (the image could not be read when the store was prepared)" : " (not prepared)");
        continue;
      }
      batch_rows.push_back(static_cast<int64_t>(*row));
      batch_index.push_back(i);
    }
    if (!batch_rows.empty()) {
      std::vector<std::vector<Hypothesis>> hyps;
      {
        at::NoGradGuard no_grad;
        at::Tensor features = store.gather(batch_rows).to(device);  // [B, n, D]
        hyps = search(bundle.decoder, features, tokens, so);
      }
      for (std::size_t b = 0; b < batch_index.size(); ++b) {
        Decoded& r = out[batch_index[b]];
        r.rows = rows;
        r.cols = cols;
        if (b >= hyps.size() || hyps[b].empty()) {
          r.error = entries[batch_index[b]]->key + ": the search returned no caption";
          continue;
        }
        const Hypothesis& best = hyps[b].front();
        for (auto id : best.tokens) r.words.push_back(bundle.vocab.word(id));
        r.alpha = alpha_rows(best.alphas, best.tokens.size(), static_cast<int64_t>(rows) * cols);
      }
    }
    done = last;
    if (progress) progress(done);
  }
}

// Decodes the images with the caption pipeline (the model's own encoder).
void decode_images(const EvalOptions& o, const std::vector<const ImageEntry*>& entries, c10::Device device,
                   std::vector<Decoded>& out, const std::function<void(std::size_t)>& progress, json& info) {
  CaptionerOptions co;
  co.model = o.model;
  co.encoder_models_dir = o.encoder_models_dir;
  co.search = o.search;
  co.search.alternatives = 1;
  co.batch_size = o.batch_size;
  co.seed = o.seed;
  Captioner captioner(co, device);
  info["model"] = captioner.model_dir().string();
  info["attention"] = captioner.hard_attention() ? "hard" : "soft";
  std::vector<fs::path> paths;
  paths.reserve(entries.size());
  for (const ImageEntry* e : entries) paths.push_back(e->path);
  captioner.caption_files(
      paths,
      [&](ImageCaption& ic) {
        Decoded& r = out.at(ic.index);
        if (!ic.ok()) {
          r.error = ic.error;
          return;
        }
        r.words = std::move(ic.words);
        r.alpha = std::move(ic.alpha);
        r.rows = ic.grid_rows;
        r.cols = ic.grid_cols;
        if (!ic.rgb.empty()) {
          r.width = ic.rgb.cols;
          r.height = ic.rgb.rows;
        }
      },
      /*keep_images=*/true, [&](std::size_t done, std::size_t) {
        if (progress) progress(done);
      });
}

std::string joined(const std::vector<std::string>& words) {
  std::string s;
  for (std::size_t i = 0; i < words.size(); ++i) s += (i ? " " : "") + words[i];
  return s;
}

json optional_number(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

}  // namespace

EvalReport run_evaluation(const EvalOptions& o, c10::Device device, std::ostream& err, bool quiet) {
  validate(o);
  const auto start = std::chrono::steady_clock::now();

  // The data: every listed image of the split is evaluated; a missing file is a failed image.
  DatasetOptions dopt;
  dopt.check_images = false;
  const Dataset dataset = load_dataset(o.data, dopt);
  std::vector<const ImageEntry*> entries = dataset.split(o.split);
  if (entries.empty()) {
    std::map<std::string, std::size_t> splits;
    for (const auto& img : dataset.images) ++splits[img.split];
    std::string names;
    for (const auto& [name, count] : splits) names += (names.empty() ? "" : ", ") + name + " (" + std::to_string(count) + ")";
    throw InputError(o.data + ": no images in split \"" + o.split + "\" (splits: " + (names.empty() ? "none" : names) +
                     ")");
  }
  if (o.max_images > 0 && entries.size() > static_cast<std::size_t>(o.max_images))
    entries.resize(static_cast<std::size_t>(o.max_images));

  // Boxes, when there are any.
  std::optional<Instances> instances;
  std::optional<ClassLexicon> lexicon;
  std::string instances_path = o.instances;
  if (instances_path.empty()) {
    if (auto found = find_instances(o.data)) instances_path = found->string();
  }
  if (!instances_path.empty()) {
    instances = load_instances(instances_path);
    std::map<std::string, std::vector<std::string>> synonyms;
    if (!o.synonyms.empty()) synonyms = load_synonyms(o.synonyms);
    lexicon = ClassLexicon(instances->categories, synonyms, o.builtin_synonyms);
    if (!quiet) {
      for (const auto& w : instances->warnings) err << "warning: " << w << "\n";
    }
  } else if (!o.synonyms.empty()) {
    throw UsageError("--synonyms needs object boxes (--instances, or instances.json beside the dataset)");
  }

  // No output of the evaluation may replace one of its inputs (--out DIR holding the annotations).
  ProtectedInputs inputs;
  inputs.add(fs::path(dataset.source), "the dataset file");
  if (!instances_path.empty()) inputs.add(fs::path(instances_path), "--instances");
  if (!o.synonyms.empty()) inputs.add(fs::path(o.synonyms), "--synonyms");
  for (const char* name : {"results.json", "metrics.json", "pointing.jsonl"})
    refuse_overwriting_input(fs::path(o.out) / name, "--out");

  // Output folder first, so that a bad --out fails before the decoding.
  const fs::path out_dir(o.out);
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec || !fs::is_directory(out_dir)) throw OutputError(o.out + ": cannot create the output folder" + (ec ? ": " + ec.message() : ""));

  json metrics = json::object();
  std::vector<Decoded> decoded(entries.size());
  auto progress = [&](std::size_t done) {
    if (!quiet) err << "\reval: " << done << "/" << entries.size() << " images" << std::flush;
  };
  if (!o.features.empty())
    decode_features(o, entries, device, decoded, progress, metrics);
  else
    decode_images(o, entries, device, decoded, progress, metrics);
  if (!quiet) err << "\n";

  // Captions, references, pointing.
  EvalReport report;
  report.images = entries.size();
  std::map<std::string, std::vector<std::string>> references;
  for (const auto& [id, refs] : dataset.references(o.split)) references[std::to_string(id)] = refs;
  std::map<std::string, std::string> candidates;
  json results = json::array();
  std::string per_word;
  PointingTally tally;
  std::size_t without_size = 0, without_boxes = 0;
  int regions = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const ImageEntry& e = *entries[i];
    Decoded& d = decoded[i];
    if (!d.error.empty()) {
      ++report.failed;
      err << "error: " << d.error << "\n";
      continue;
    }
    regions = d.rows * d.cols;
    const std::string caption = joined(d.words);
    candidates[std::to_string(e.id)] = caption;
    results.push_back({{"image_id", e.id}, {"caption", caption}});
    const ImageObjects* objects = nullptr;
    if (instances) {
      auto it = instances->images.find(e.id);
      if (it != instances->images.end()) objects = &it->second;
    }
    if (!objects) {
      if (instances) ++without_boxes;
      tally.add(attention_statistics(d.alpha));
      continue;
    }
    ImageObjects sized = *objects;
    if (sized.width <= 0 || sized.height <= 0) {
      sized.width = e.width > 0 ? e.width : d.width;
      sized.height = e.height > 0 ? e.height : d.height;
    }
    if (sized.width <= 0 || sized.height <= 0) {
      ++without_size;
      tally.add(attention_statistics(d.alpha));
      continue;
    }
    const ImagePointing p = point_caption(sized, d.words, d.alpha, d.rows, d.cols, *lexicon);
    tally.add(p);
    if (o.per_word) {
      for (const auto& w : p.words) {
        json line = {{"image_id", e.id}, {"file", e.key}};
        line.update(to_json(w));
        per_word += line.dump() + "\n";
      }
    }
  }
  if (candidates.empty())
    throw InputError(o.data + ": none of the " + std::to_string(entries.size()) + " images of split \"" + o.split +
                     "\" could be captioned");
  if (without_size > 0 && !quiet)
    err << "warning: " << without_size << " images have boxes but no known size (not in the instances file nor the "
        << "dataset, and decoded from features); left out of pointing\n";
  if (without_boxes > 0 && !quiet)
    err << "warning: " << without_boxes << " images are not in " << instances_path << "; left out of pointing\n";

  // Scores: only over the images evaluated (references of the others are not used).
  std::map<std::string, std::vector<std::string>> refs_used;
  for (const auto& [id, c] : candidates) {
    auto it = references.find(id);
    if (it != references.end()) refs_used.insert(*it);
  }
  if (refs_used.empty())
    throw InputError(o.data + ": the images of split \"" + o.split + "\" have no reference captions");
  const CaptionScores s = score_captions(refs_used, candidates);

  metrics["format_version"] = 1;
  for (const auto& name : metric_names()) metrics[name] = s.corpus.at(name);
  metrics["not_computed"] = not_computed_metrics();
  if (instances) {
    metrics["pointing"] = optional_number(tally.pointing());
    metrics["pointing_words"] = tally.counted();
    metrics["pointing_hits"] = tally.hits();
    metrics["pointing_mass"] = optional_number(tally.mass());
    metrics["pointing_chance"] = optional_number(tally.chance());
    metrics["pointing_absent_words"] = tally.absent();
    json per_class = json::object();
    for (const auto& [cls, ch] : tally.per_class())
      per_class[cls] = {{"words", ch.first}, {"hits", ch.second}, {"pointing", static_cast<double>(ch.second) / ch.first}};
    metrics["pointing_per_class"] = per_class;
    metrics["instances"] = instances_path;
  }
  metrics["attention_entropy"] = optional_number(tally.entropy());
  metrics["attention_entropy_max"] = regions > 0 ? json(std::log(static_cast<double>(regions))) : json(nullptr);
  metrics["images"] = s.images_scored;
  metrics["images_failed"] = report.failed;
  metrics["images_without_references"] = s.unknown.size();
  metrics["split"] = o.split;
  metrics["dataset"] = o.data;
  metrics["features"] = o.features.empty() ? json(nullptr) : json(o.features);
  metrics["beam"] = o.search.beam_size;
  metrics["max_length"] = o.search.max_length;
  metrics["length_penalty"] = o.search.length_penalty;
  metrics["hard_decode"] = enum_name(o.search.hard_decode);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics["seconds"] = report.seconds;

  const fs::path results_file = out_dir / "results.json", metrics_file = out_dir / "metrics.json";
  write_file_atomic(results_file, results.dump(1) + "\n");
  report.files.push_back(results_file.string());
  write_file_atomic(metrics_file, metrics.dump(1) + "\n");
  report.files.push_back(metrics_file.string());
  if (o.per_word) {
    if (!instances && !quiet) err << "warning: --per-word: no object boxes, pointing.jsonl is empty\n";
    const fs::path pw = out_dir / "pointing.jsonl";
    write_file_atomic(pw, per_word);
    report.files.push_back(pw.string());
  }
  report.metrics = std::move(metrics);
  return report;
}

}  // namespace satcap
