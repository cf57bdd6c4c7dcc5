// `satcap compare`: trains a soft- and a hard-attention model on the same data and budget,
// evaluates both, prints one table and stacks their attention figures of one test image. The work
// is lib/include/satcap/compare.h. Options: defaults < --quick < --config FILE < the command line.
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <utility>
#include <vector>

#include "command.h"
#include "compare/compare.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/runtime.h"

namespace satcap::app {
namespace {

struct CompareCommand {
  CompareOptions options;
  bool quick = false;
  std::string config;
  // Training options typed on the command line: option -> TrainOptions JSON key, and the value.
  int epochs = 20, batch = 64, hidden = 512, embed = 512, attention_dim = 512, val_max_images = 1000;
  std::int64_t max_steps = 0;
  std::uint64_t seed = 1;
  double lr = 4e-4;
  std::vector<std::pair<CLI::Option*, std::function<void(nlohmann::json&)>>> train_keys;
  std::vector<CLI::Option*> plain;  // non-training options typed by the user (win over --quick)
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
      c->plain.push_back(sub.add_option("--scenes", o.scenes_images, "Scenes generated when no --data is given")
                             ->capture_default_str());
      sub.add_option("--objects", o.scenes_objects, "Scene objects: shapes or fashion")
          ->capture_default_str()
          ->check(CLI::IsMember({"shapes", "fashion"}));
      sub.add_option("--scenes-seed", o.scenes_seed, "Seed of the generated scenes")->capture_default_str();
      sub.add_option("--encoder", o.encoder, "Encoder of the shared feature store")->capture_default_str();
      sub.add_option("--config", c->config, "JSON file of training options for both runs (keys as satcap train's "
                                            "config.effective.json; \"attention\" is set by compare)");
      auto train = [&](auto& field, const std::string& name, const std::string& key, const std::string& text) {
        CLI::Option* opt = sub.add_option(name, field, text)->capture_default_str();
        auto* value = &field;
        c->train_keys.emplace_back(opt, [key, value](nlohmann::json& j) { j[key] = *value; });
      };
      train(c->epochs, "--epochs", "epochs", "Epochs of each training run");
      train(c->max_steps, "--max-steps", "max_steps", "Stop each run after N optimizer steps (0 = all epochs)");
      train(c->batch, "--batch", "batch_size", "Captions per minibatch");
      train(c->lr, "--lr", "lr", "Adam learning rate");
      train(c->hidden, "--hidden-dim", "hidden_dim", "LSTM width");
      train(c->embed, "--embed-dim", "embed_dim", "Word embedding size");
      train(c->attention_dim, "--attention-dim", "attention_dim", "Attention MLP width");
      train(c->val_max_images, "--val-max-images", "val_max_images", "Validate on at most N images (0 = all)");
      train(c->seed, "--seed", "seed", "Seed of both runs (shuffling, initialisation, dropout, sampling)");
      c->plain.push_back(sub.add_option("--min-word-count", o.min_word_count, "Rarer training words become <unk>")
                             ->capture_default_str());
      c->plain.push_back(sub.add_option("--beam", o.beam_size, "Beam width of the evaluation")->capture_default_str());
      c->plain.push_back(sub.add_option("--max-len", o.max_length, "Longest evaluated caption")->capture_default_str());
      sub.add_option("--max-images", o.max_eval_images, "Evaluate at most N test images (0 = all)")
          ->capture_default_str();
      sub.add_option("--image", o.image_id, "Image id of the test image drawn (-1 = the test image with most objects)")
          ->capture_default_str();
      sub.add_flag("--retrain", o.retrain, "Train again even when OUT/soft and OUT/hard hold runs (without it: finished runs of the same options are "
                   "reused or continued to more epochs, anything else is refused, never deleted)");
      sub.add_option("--attention", o.attention,
                     "Runs to train and evaluate: both (the table and figure), or only soft or hard (two processes "
                     "can share the cores; a later 'both' reuses their finished runs)")
          ->capture_default_str()
          ->check(CLI::IsMember({"both", "soft", "hard"}));
      return [c] {
        CompareOptions o = c->options;
        if (!c->config.empty()) {
          std::ifstream in(c->config, std::ios::binary);
          if (!in) throw InputError(c->config + ": cannot read the config file");
          try {
            o.train = nlohmann::json::parse(in);
          } catch (const nlohmann::json::exception& e) {
            throw InputError(c->config + ": malformed JSON (" + e.what() + ")");
          }
        }
        if (c->quick) {
          CompareOptions q = quick_compare_options(o);
          // Options typed on the command line keep their value.
          if (c->plain[0]->count() == 0) o.scenes_images = q.scenes_images;
          if (c->plain[1]->count() == 0) o.min_word_count = q.min_word_count;
          if (c->plain[2]->count() == 0) o.beam_size = q.beam_size;
          if (c->plain[3]->count() == 0) o.max_length = q.max_length;
          o.train = q.train;
        }
        for (auto& [opt, set] : c->train_keys)
          if (opt->count() > 0) set(o.train);
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
