// `satcap eval`: decodes a dataset split with a model, scores it (BLEU-1..4, ROUGE-L, CIDEr) and
// measures attention pointing on object boxes. The work is lib/include/satcap/eval/evaluate.h.
#include <iostream>

#include "command.h"
#include "eval/metrics_table.h"
#include "options_cli.h"
#include "satcap/eval/evaluate.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/runtime.h"

namespace satcap::app {
namespace {

const CommandRegistration registration{
    "eval",
    "Evaluate a model on a dataset split: captions (results.json), BLEU-1..4/ROUGE-L/CIDEr, attention pointing "
    "on object boxes and attention entropy (metrics.json)",
    [](CLI::App& sub) -> RunFunction {
      auto o = std::make_shared<EvalOptions>();
      sub.add_option("--model", o->model, "Model bundle folder or training output folder (default: the default model)");
      sub.add_option("--data", o->data,
                     "Dataset: COCO captions file, Karpathy dataset.json, Flickr8k token file or a folder (e.g. the "
                     "output of satcap scenes)")
          ->required();
      sub.add_option("--split", o->split, "Split to evaluate")->capture_default_str();
      sub.add_option("--features", o->features,
                     "Decode from this prepared feature store (satcap prepare, or a training run's features/) instead "
                     "of the images");
      add_search_options(sub, o->search, /*with_alternatives=*/false);
      sub.add_option("--batch", o->batch_size, "Images per batch")->capture_default_str();
      sub.add_option("--out", o->out, "Output folder: results.json, metrics.json (and pointing.jsonl)")
          ->capture_default_str();
      sub.add_flag("--per-word", o->per_word,
                   "Write OUT/pointing.jsonl: one line per generated word that names an object class")
          ->capture_default_str();
      sub.add_option("--instances", o->instances,
                     "COCO instances JSON with object boxes (default: instances.json beside the dataset, if any)");
      sub.add_option("--synonyms", o->synonyms, "JSON {\"class name\": [\"word\", ...]}: more words per class");
      sub.add_flag("!--no-builtin-synonyms", o->builtin_synonyms,
                   "Do not use the built-in COCO synonyms (man, woman, people -> person, ...)");
      sub.add_option("--max-images", o->max_images, "Evaluate only the first N images of the split (0 = all)")
          ->capture_default_str();
      sub.add_option("--seed", o->seed, "Seed of random draws (--hard-decode sample)")->capture_default_str();
      return [o] {
        const GlobalOptions& g = global_options();
        const EvalReport report = run_evaluation(*o, parse_device(g.device), std::cerr, g.quiet);
        print_metrics_table(report.metrics, std::cout);
        if (!g.quiet) {
          for (const auto& f : report.files) std::cerr << "wrote " << f << "\n";
        }
        return report.failed > 0 ? static_cast<int>(ExitCode::partial) : 0;
      };
    }};

}  // namespace
}  // namespace satcap::app
