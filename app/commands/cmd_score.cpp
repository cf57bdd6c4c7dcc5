// `satcap score`: the official COCO caption metrics (BLEU-1..4, ROUGE-L, CIDEr) of a COCO results
// file against COCO caption annotations. METEOR and SPICE (Java tools) are not computed.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "command.h"
#include "satcap/eval/coco_results.h"
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

int run_score(const ScoreOptions& o) {
  ProtectedInputs inputs;
  inputs.add(o.annotations, "--annotations");
  inputs.add(o.results, "--results");
  if (!o.per_image.empty()) refuse_overwriting_input(o.per_image, "--per-image");
  const auto references = load_coco_references(o.annotations);
  const CocoResults results = load_coco_results(o.results, references, o.annotations);
  const auto& candidates = results.captions;

  const CaptionScores s = score_captions(references, candidates);
  if (!s.missing.empty() && !global_options().quiet) {
    std::cerr << "warning: " << s.missing.size() << " of " << references.size()
              << " annotated images have no result and are not scored (" << first_ids(s.missing) << ")\n";
  }
  if (!o.per_image.empty()) {
    nlohmann::json per = nlohmann::json::array();
    for (const auto& [id, m] : s.per_image) {
      nlohmann::json e;
      e["image_id"] = results.image_ids.at(id);
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
