// `satcap train`: trains a decoder on a dataset's prepared features (or, with --fine-tune-encoder, on
// its images together with the encoder's last blocks) and writes a model bundle.
// Options: defaults < --config FILE.json < the command line; the effective set is written to
// <out>/config.effective.json.
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "command.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/runtime.h"
#include "satcap/train/trainer.h"

namespace satcap::app {
namespace {

struct TrainCommand {
  TrainCommandOptions command;
  TrainOptions options;
  std::string config;                                   // --config FILE.json
  std::vector<std::pair<CLI::Option*, std::string>> keys;  // option -> TrainOptions JSON key
};

nlohmann::json read_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot read the config file");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": malformed JSON (" + e.what() + ")");
  }
}

const CommandRegistration registration{
    "train", "Train a decoder (soft or hard attention) on a dataset's features and write a model bundle",
    [](CLI::App& sub) -> RunFunction {
      auto t = std::make_shared<TrainCommand>();
      auto& c = t->command;
      auto& o = t->options;
      sub.add_option("--data", c.data,
                     "Dataset: a COCO captions file, a Karpathy dataset.json, a Flickr8k token file, or a folder")
          ->required();
      sub.add_option("--out", c.out, "Output folder: model/ (best bundle), checkpoint.pt, train_log.jsonl, curves.png")
          ->required();
      sub.add_option("--features", c.features,
                     "Prepared feature store (satcap prepare); \"\" = prepare one into <out>/features")
          ->capture_default_str();
      sub.add_option("--encoder", c.encoder, "Encoder used to prepare features when --features is not given (or fine-tuned)")
          ->capture_default_str();
      sub.add_option("--min-word-count", c.min_word_count, "Words seen fewer times in training captions become <unk>")
          ->capture_default_str();
      sub.add_flag("!--no-eval-test", c.eval_test, "Do not score the best model on the test split at the end");
      sub.add_option("--config", t->config, "JSON file of training options (keys as in config.effective.json); the "
                                            "command line overrides it")
          ->capture_default_str();

      auto add = [&](auto& field, const std::string& name, const std::string& key, const std::string& description) {
        CLI::Option* opt = sub.add_option(name, field, description)->capture_default_str();
        t->keys.emplace_back(opt, key);
        return opt;
      };
      add(o.epochs, "--epochs", "epochs", "Passes over the training captions");
      add(o.batch_size, "--batch", "batch_size", "Captions per minibatch");
      add(o.lr, "--lr", "lr", "Adam learning rate");
      add(o.grad_clip, "--grad-clip", "grad_clip", "Clip gradients to this global L2 norm (0 = off)");
      add(o.lr_decay, "--lr-decay", "lr_decay", "Learning rate factor after --lr-decay-patience bad validations");
      add(o.lr_decay_patience, "--lr-decay-patience", "lr_decay_patience",
          "Validations without a better BLEU-4 before the learning rate decays (0 = never)");
      add(o.early_stop_patience, "--early-stop-patience", "early_stop_patience",
          "Validations without a better BLEU-4 before stopping (0 = never)");
      add(o.attention, "--attention", "attention", "Attention: soft or hard")->check(CLI::IsMember({"soft", "hard"}));
      add(o.embed_dim, "--embed-dim", "embed_dim", "Word embedding size");
      add(o.attention_dim, "--attention-dim", "attention_dim", "Attention MLP width");
      add(o.hidden_dim, "--hidden-dim", "hidden_dim", "LSTM width");
      add(o.dropout, "--dropout", "dropout", "Dropout on h_t and the deep output");
      add(o.alpha_c, "--alpha-c", "alpha_c", "Weight of the doubly stochastic attention regularisation");
      add(o.checkpoint_every, "--checkpoint-every", "checkpoint_every",
          "Checkpoint every N steps (0 = at epoch ends only)");
      add(o.log_every, "--log-every", "log_every", "Log the training loss every N steps");
      add(o.val_every, "--val-every", "val_every", "Validate every N epochs");
      add(o.val_beam_size, "--val-beam", "val_beam_size", "Beam size of validation decoding (1 = greedy)");
      add(o.val_max_images, "--val-max-images", "val_max_images", "Validate on at most N images (0 = all)");
      add(o.max_caption_length, "--max-caption-length", "max_caption_length", "Longest decoded caption (words)");
      add(o.max_train_length, "--max-train-length", "max_train_length",
          "Training captions are cut to this many words (0 = no limit)");
      add(o.max_steps, "--max-steps", "max_steps", "Stop after N optimizer steps in total (0 = all epochs)");
      add(o.seed, "--seed", "seed", "Seed of shuffling, initialisation, dropout and sampling");
      t->keys.emplace_back(sub.add_flag("--resume", o.resume, "Continue from <out>/checkpoint.pt"), "resume");
      t->keys.emplace_back(
          sub.add_flag("--fine-tune-encoder", o.fine_tune_encoder,
                       "Also train the encoder's last blocks (--fine-tune-blocks), from the images (no --features); "
                       "the bundle then carries the tuned encoder weights"),
          "fine_tune_encoder");
      add(o.fine_tune_blocks, "--fine-tune-blocks", "fine_tune_blocks",
          "With --fine-tune-encoder: the encoder's last N blocks up to the feature layer are trained "
          "(mobilenet_v2 2 = block_12 + block_13_expand; inception_v3 2 = mixed6 + mixed7)");
      add(o.encoder_lr, "--encoder-lr", "encoder_lr", "With --fine-tune-encoder: Adam learning rate of the encoder's blocks");
      add(o.precision, "--precision", "precision",
          "Mixed precision of the training step: fp32, bf16 (autocast to bfloat16; CUDA, or the CPU's slower "
          "reference path) or fp16 (autocast to float16 with loss scaling; CUDA only)");

      return [t] {
        std::set<std::string> given;
        for (auto& [opt, key] : t->keys)
          if (opt->count() > 0) given.insert(key);
        nlohmann::json config;
        if (!t->config.empty()) config = read_config(t->config);
        TrainOptions effective =
            resolve_train_options(t->config.empty() ? nullptr : &config, t->options, given, t->config);
        c10::Device device = parse_device(global_options().device);
        TrainSummary s = run_training(t->command, effective, device, global_options().quiet);
        std::cout << t->command.out << "/model: " << s.steps << " steps, " << s.epochs_completed
                  << " epochs, best validation BLEU-4 " << s.best_bleu4 << " (epoch " << s.best_epoch << ")\n";
        return 0;
      };
    }};

}  // namespace
}  // namespace satcap::app
