// `satcap score`: the official COCO caption metrics (BLEU-1..4, ROUGE-L, CIDEr) of a COCO results
// file against COCO caption annotations. METEOR and SPICE (Java tools) are not computed.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "command.h"
#include "satcap/eval/metrics.h"
#include "satcap/runtime/atomic_file.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"

namespace satcap::app {
namespace {

struct ScoreOptions {
  std::string results;      // COCO results file: [{"image_id": int, "caption": str}]
  std::string annotations;  // COCO captions file: {"annotations": [{"image_id", "caption"}]}
  bool json = false;        // print the scores as JSON on stdout instead of a table
  std::string per_image;    // also write per-image scores to this JSON file ("" = no)
};

// An image id as a string: COCO uses integers; strings are accepted too.
std::string image_id(const nlohmann::json& entry, const std::string& where) {
  if (!entry.is_object() || !entry.contains("image_id")) throw InputError(where + ": no \"image_id\"");
  const auto& v = entry["image_id"];
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_string() && !v.get<std::string>().empty()) return v.get<std::string>();
  throw InputError(where + ": \"image_id\" must be an integer or a non-empty string (got " + v.dump() + ")");
}

std::string caption(const nlohmann::json& entry, const std::string& where) {
  if (!entry.contains("caption") || !entry["caption"].is_string())
    throw InputError(where + ": \"caption\" must be a string");
  return entry["caption"].get<std::string>();
}

std::string first_ids(const std::vector<std::string>& ids, size_t n = 5) {
  std::string s;
  for (size_t i = 0; i < ids.size() && i < n; ++i) s += (i ? ", " : "") + ids[i];
  if (ids.size() > n) s += ", ...";
  return s;
}

int run_score(const ScoreOptions& o) {
  ProtectedInputs inputs;
  inputs.add(o.annotations, "--annotations");
  inputs.add(o.results, "--results");
  if (!o.per_image.empty()) refuse_overwriting_input(o.per_image, "--per-image");
  // Annotations: image id -> reference captions.
  const nlohmann::json ann = read_json_file(o.annotations, ExitCode::input);
  if (!ann.is_object() || !ann.contains("annotations") || !ann["annotations"].is_array())
    throw InputError(o.annotations + ": not COCO caption annotations (no \"annotations\" list)");
  std::map<std::string, std::vector<std::string>> references;
  const auto& anns = ann["annotations"];
  for (size_t i = 0; i < anns.size(); ++i) {
    const std::string where = o.annotations + ": annotations[" + std::to_string(i) + "]";
    references[image_id(anns[i], where)].push_back(caption(anns[i], where));
  }
  // Results: one caption per image, as the official evaluation requires.
  const nlohmann::json res = read_json_file(o.results, ExitCode::input);
  if (!res.is_array()) throw InputError(o.results + ": not a COCO results list ([{\"image_id\", \"caption\"}])");
  std::map<std::string, std::string> candidates;
  std::map<std::string, size_t> entry_of;
  for (size_t i = 0; i < res.size(); ++i) {
    const std::string where = o.results + ": entry " + std::to_string(i);
    const std::string id = image_id(res[i], where);
    const std::string cap = caption(res[i], where);
    if (auto it = entry_of.find(id); it != entry_of.end())
      throw InputError(where + ": image_id " + id + " already has a caption (entry " + std::to_string(it->second) +
                       "); the official evaluation takes exactly one caption per image");
    entry_of[id] = i;
    candidates[id] = cap;
  }
  std::vector<std::string> unknown;
  for (const auto& kv : candidates)
    if (!references.count(kv.first)) unknown.push_back(kv.first);
  if (!unknown.empty())
    throw InputError(o.results + ": " + std::to_string(unknown.size()) + " image_id(s) have no captions in " +
                     o.annotations + " (" + first_ids(unknown) + "); wrong annotations file?");
  if (candidates.empty()) throw InputError(o.results + ": no results");

  const CaptionScores s = score_captions(references, candidates);
  if (!s.missing.empty() && !global_options().quiet) {
    std::cerr << "warning: " << s.missing.size() << " of " << references.size()
              << " annotated images have no result and are not scored (" << first_ids(s.missing) << ")\n";
  }
  if (!o.per_image.empty()) {
    nlohmann::json per = nlohmann::json::array();
    for (const auto& [id, m] : s.per_image) {
      nlohmann::json e;
      e["image_id"] = res[entry_of.at(id)]["image_id"];
      for (const auto& name : metric_names()) e[name] = m.at(name);
      per.push_back(e);
    }
    write_file_atomic(o.per_image, per.dump(1) + "\n");
  }
  if (o.json) {
    nlohmann::json j;
    for (const auto& name : metric_names()) j[name] = s.corpus.at(name);
    j["not_computed"] = not_computed_metrics();
    j["images_scored"] = s.images_scored;
    j["missing_image_ids"] = s.missing;
    std::cout << j.dump(1) << "\n";
  } else {
    std::cout << "images scored: " << s.images_scored;
    if (!s.missing.empty()) std::cout << " (" << s.missing.size() << " annotated images without a result)";
    std::cout << "\n";
    for (const auto& name : metric_names()) {
      std::cout << std::left << std::setw(8) << name << std::right << std::fixed << std::setprecision(4)
                << std::setw(8) << s.corpus.at(name) << "   (x100: " << std::setprecision(1)
                << 100 * s.corpus.at(name) << ")\n";
    }
    std::cout << "METEOR and SPICE are not computed: they need Java tools (Meteor 1.5, SPICE 1.0) that are "
                 "not available here.\n";
  }
  return 0;
}

const CommandRegistration registration{
    "score", "Score COCO results against caption annotations (BLEU-1..4, ROUGE-L, CIDEr as in pycocoevalcap)",
    [](CLI::App& sub) -> RunFunction {
      auto opts = std::make_shared<ScoreOptions>();
      sub.add_option("--results", opts->results, "COCO results JSON: [{\"image_id\": int, \"caption\": str}]")
          ->required();
      sub.add_option("--annotations", opts->annotations, "COCO captions JSON (captions_val2014.json style)")
          ->required();
      sub.add_flag("--json", opts->json, "Print the scores as JSON")->capture_default_str();
      sub.add_option("--per-image", opts->per_image, "Write per-image scores to this JSON file")
          ->capture_default_str();
      return [opts] { return run_score(*opts); };
    }};

}  // namespace
}  // namespace satcap::app
