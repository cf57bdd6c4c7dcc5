// `satcap compare`: soft against hard attention (the paper's Table 1 question, with attention
// pointing added) on one dataset, same data, same budget, same seed:
//   1. the data: the given dataset, or a synthetic scenes dataset generated into OUT/scenes (scenes.h:
//      object boxes known, so pointing can be measured);
//   2. one feature store for both models: OUT/features (prepare.h, the frozen encoder);
//   3. `satcap train` twice (trainer.h run_training): OUT/soft and OUT/hard, identical options but
//      the attention;
//   4. `satcap eval` twice (evaluate.h) on the test split: OUT/soft/eval, OUT/hard/eval;
//   5. one test image captioned by both models, its attention figures stacked (soft above hard):
//      OUT/attention_soft_vs_hard.png;
//   6. the table: BLEU-1..4, ROUGE-L, CIDEr (x100), pointing (%, and chance), attention entropy
//      (nats), training time; printed, and written to OUT/compare.md and OUT/compare.json.
// No torch in this header.
#pragma once

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <ostream>
#include <string>

#include "attention_runs.h"
#include "satcap/data/scenes.h"
#include "satcap/decode/search_options.h"

namespace satcap {

struct CompareOptions {
  // Dataset with train/val/test splits ("" = generate synthetic scenes into OUT/scenes, or reuse
  // the ones a previous run generated there).
  std::string data;
  // Output folder.
  std::string out = "compare";
  // Scenes to generate when no dataset is given.
  int scenes_images = 2000;
  // Scene objects.
  SceneObjects scenes_objects = SceneObjects::shapes;
  // Seed of the generated scenes.
  std::uint64_t scenes_seed = 1;
  // Encoder of the shared feature store (embedded name or TorchScript file).
  std::string encoder = "mobilenet_v2";
  // Training options of both runs as JSON, keys as in config.effective.json / TrainOptions
  // ("epochs", "batch_size", "max_steps", "seed", {"decoder": {"hidden_dim": ...}}, ...); absent
  // keys keep the TrainOptions defaults. The decoder's "attention" is set to soft, then hard.
  nlohmann::json train = nlohmann::json::object();
  // Vocabulary: words seen fewer times in the training captions become <unk>.
  int min_word_count = 5;
  // The evaluation's search (and the figure's).
  SearchOptions search;
  // Evaluate at most this many test images (0 = all).
  int max_eval_images = 0;
  // Image id of the test image drawn for the figure (-1 = the test image with the most objects,
  // the first among equals).
  std::int64_t image_id = -1;
  // Retrain even when OUT/soft and OUT/hard hold finished runs with the same options and data.
  // Without it those are reused and only evaluated again, a finished run of the same options with
  // fewer epochs is continued from its checkpoint (which gives the weights of training straight),
  // and a run folder holding anything else (other options, an unfinished run) is refused
  // (UsageError) rather than deleted.
  bool retrain = false;
  // Which runs this invocation trains and evaluates: both (the table and the figure), or only soft
  // or hard (that run's training and evaluation, no table): two processes, one per attention, can
  // then share the cores, and a final "both" reuses their finished runs.
  AttentionRuns attention = AttentionRuns::both;
};

// Throws UsageError naming the option.
void validate(const CompareOptions& options);

// The small settings of --quick (a smoke run: 8 min measured on two busy cores; its models are too
// undertrained to name objects, so pointing stays "-"): 150 scenes, tiny widths (64), 60 training
// steps, 1 validation image batch, greedy evaluation of captions up to 20 words. `options` keeps
// its other settings; its training options apply over the quick ones.
CompareOptions quick_compare_options(const CompareOptions& options);

struct CompareReport {
  nlohmann::json table;  // {"soft": {...metrics, "training_seconds"}, "hard": {...}} (OUT/compare.json;
                         // with --attention soft|hard only that key, and no file)
  std::string markdown;  // the table as Markdown (OUT/compare.md; "" with --attention soft|hard)
  std::string figure;    // path of OUT/attention_soft_vs_hard.png ("" when none could be drawn)
};

// Runs the whole comparison; progress and warnings on `err` (unless quiet).
CompareReport run_compare(const CompareOptions& options, c10::Device device, std::ostream& err, bool quiet = false);

// The Markdown table of two metrics.json objects with "training_seconds" added.
std::string compare_table_markdown(const nlohmann::json& soft, const nlohmann::json& hard);

}  // namespace satcap
