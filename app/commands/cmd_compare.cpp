// `satcap compare`: trains a soft- and a hard-attention model on the same data and budget,
// evaluates both, prints one table and stacks their attention figures of one test image. The work
// is app/compare/compare.h. Options: defaults < --quick < --config FILE < the command line.
#include <fstream>
#include <iostream>
#include <memory>

#include "command.h"
#include "compare/compare.h"
#include "options_cli.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "satcap/runtime/runtime.h"
#include "satcap/train/train_options.h"

namespace satcap::app {
namespace {

struct CompareCommand {
  CompareOptions options;
  bool quick = false;
  std::string config;
  TrainOptions train;          // the training options typed on the command line (others: defaults)
  OptionBinder train_binder;   // which of them were typed
  OptionBinder search_binder;  // which search options were typed (they win over --quick)
  CLI::Option* scenes = nullptr;
  CLI::Option* min_word_count = nullptr;
};

const CommandRegistration registration{
    "compare",
    "Soft against hard attention: train both on the same data and budget, evaluate (BLEU, ROUGE-L, CIDEr, pointing, "
    "entropy, time) and draw one test image under both",
    [](CLI::App& sub) -> RunFunction {
      auto c = std::make_shared<CompareCommand>();
      CompareOptions& o = c->options;
      sub.add_option("--data", o.data, "Dataset with train/val/test splits (default: generate scenes into OUT/scenes)");
      sub.add_option("--out", o.out, "Output folder")->capture_default_str();
      sub.add_flag("--quick", c->quick,
                   "Smoke run: 150 scenes, widths 64, 60 training steps, greedy evaluation (options typed on the "
                   "command line still win)");
      c->scenes = sub.add_option("--scenes", o.scenes_images, "Scenes generated when no --data is given")
                      ->capture_default_str();
      add_enum_option(sub, "--objects", o.scenes_objects, "Scene objects: shapes or fashion");
      sub.add_option("--scenes-seed", o.scenes_seed, "Seed of the generated scenes")->capture_default_str();
      sub.add_option("--encoder", o.encoder, "Encoder of the shared feature store")->capture_default_str();
      sub.add_option("--config", c->config, "JSON file of training options for both runs (keys as satcap train's "
                                            "config.effective.json; the decoder's \"attention\" is set by compare)");
      c->min_word_count = sub.add_option("--min-word-count", o.min_word_count, "Rarer training words become <unk>")
                              ->capture_default_str();
      // Every training option of satcap train, but the attention (compare sets it) and --resume.
      c->train_binder.add(sub, c->train, "--", "", {"/decoder/attention", "/resume"});
      c->search_binder.add(sub, o.search, "--", "", {"/alternatives"});
      sub.add_option("--max-images", o.max_eval_images, "Evaluate at most N test images (0 = all)")
          ->capture_default_str();
      sub.add_option("--image", o.image_id, "Image id of the test image drawn (-1 = the test image with most objects)")
          ->capture_default_str();
      sub.add_flag("--retrain", o.retrain, "Train again even when OUT/soft and OUT/hard hold runs (without it: finished runs of the same options are "
                   "reused or continued to more epochs, anything else is refused, never deleted)");
      add_enum_option(sub, "--attention", o.attention,
                      "Runs to train and evaluate: both (the table and figure), or only soft or hard (two processes "
                      "can share the cores; a later 'both' reuses their finished runs)");
      return [c] {
        CompareOptions o = c->options;
        o.train = nlohmann::json::object();
        if (!c->config.empty()) {
          o.train = read_json_file(c->config, ExitCode::input);
          if (!o.train.is_object()) throw InputError(c->config + ": expected a JSON object of training options");
        }
        o.train.merge_patch(c->train_binder.typed(to_json(c->train)));
        if (c->quick) {
          const CompareOptions q = quick_compare_options(o);  // its training options under o's
          // Options typed on the command line keep their value.
          if (c->scenes->count() == 0) o.scenes_images = q.scenes_images;
          if (c->min_word_count->count() == 0) o.min_word_count = q.min_word_count;
          if (!c->search_binder.was_typed("/beam_size")) o.search.beam_size = q.search.beam_size;
          if (!c->search_binder.was_typed("/max_length")) o.search.max_length = q.search.max_length;
          o.train = q.train;
        }
        const GlobalOptions& g = global_options();
        const CompareReport r = run_compare(o, parse_device(g.device), std::cerr, g.quiet);
        if (r.markdown.empty())
          std::cout << r.table.dump(1) << "\n";  // one run: its metrics and training summary
        else
          std::cout << r.markdown;
        if (!r.figure.empty()) std::cout << "\nfigure: " << r.figure << "\n";
        return 0;
      };
    }};

}  // namespace
}  // namespace satcap::app
