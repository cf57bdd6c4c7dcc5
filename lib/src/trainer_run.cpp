// run_training (trainer.h): what `satcap train` does, from a dataset to a model bundle.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <iostream>

#include "satcap/build_config.h"
#include "satcap/bundle.h"
#include "satcap/dataset.h"
#include "satcap/encoder.h"
#include "satcap/error.h"
#include "satcap/feature_store.h"
#include "satcap/prepare.h"
#include "satcap/trainer.h"
#include "satcap/training_log.h"
#include "satcap/vocab.h"

namespace fs = std::filesystem;

namespace satcap {

nlohmann::json read_checkpoint_meta(const fs::path& path);  // trainer.cpp

namespace {

nlohmann::json summary_json(const TrainSummary& s) {
  return {{"steps", s.steps},
          {"epochs_completed", s.epochs_completed},
          {"best_bleu4", s.best_bleu4},
          {"best_epoch", s.best_epoch},
          {"best_scores", s.best_scores},
          {"final_lr", s.final_lr},
          {"seconds", s.seconds},
          {"steps_per_second", s.steps_per_second},
          {"stopped_early", s.stopped_early}};
}

}  // namespace

TrainSummary run_training(const TrainCommandOptions& command, const TrainOptions& options, c10::Device device,
                          bool quiet) {
  validate(options);
  if (options.fine_tune_encoder)
    throw UsageError("--fine-tune-encoder: not implemented yet (training runs on prepared features with a frozen "
                     "encoder); drop the option");
  if (command.data.empty()) throw UsageError("--data is required");
  if (command.out.empty()) throw UsageError("--out is required");
  if (command.min_word_count < 1)
    throw UsageError("--min-word-count must be at least 1 (got " + std::to_string(command.min_word_count) + ")");
  const fs::path out = command.out;
  std::error_code ec;
  fs::create_directories(out, ec);
  if (!fs::is_directory(out)) throw OutputError(out.string() + ": cannot create the output folder");

  auto say = [&](const std::string& line) {
    if (!quiet) std::cerr << line << "\n";
  };

  Dataset dataset = load_dataset(command.data);
  for (const auto& w : dataset.warnings) std::cerr << "warning: " << w << "\n";

  // The feature store: given, or prepared here with the default encoder.
  fs::path store_dir = command.features.empty() ? out / "features" : fs::path(command.features);
  bool prepared = false;
  if (command.features.empty() && fs::exists(store_dir / "meta.json")) {
    try {  // prepared by an earlier run into <out>/features (a resume, or a second training)
      prepared = FeatureStore::open(store_dir).complete();
    } catch (const Error&) {
      prepared = false;  // incomplete or mismatched: prepare_features resumes or reports it
    }
  }
  if (command.features.empty() && !prepared) {
    EncoderOptions eo;
    eo.source = command.encoder;
    auto encoder = load_encoder(eo);
    encoder->to(device);
    PrepareOptions po;
    if (!quiet) {
      po.progress = [](std::size_t done, std::size_t total) {
        std::cerr << "\rprepare: " << done << "/" << total << " images" << std::flush;
      };
    }
    say("preparing features with encoder " + encoder->identity() + " into " + store_dir.string());
    PrepareSummary ps = prepare_features(dataset, *encoder, store_dir.string(), po);
    if (!quiet) std::cerr << "\n";
    for (const auto& f : ps.failures) std::cerr << "warning: " << f << " (image skipped)\n";
  }
  FeatureStore store = FeatureStore::open(store_dir);

  // The vocabulary: from the training split, kept beside the checkpoint for resuming.
  const fs::path vocab_path = out / "vocab.json";
  Vocabulary vocab;
  if (options.resume && fs::exists(vocab_path)) {
    vocab = Vocabulary::load(vocab_path);
  } else {
    VocabOptions vo;
    vo.min_count = command.min_word_count;
    vo.max_length = options.max_train_length > 0 ? options.max_train_length : 1000000;
    vocab = Vocabulary::build(dataset, vo, "train");
    vocab.save(vocab_path);
  }

  // Captions and validation images with their feature rows.
  TrainingData data;
  std::size_t missing = 0;
  for (const ImageEntry* img : dataset.split("train")) {
    auto row = store.row_of(img->key);
    if (!row || store.state(*row) != RowState::written) {
      ++missing;
      continue;
    }
    for (const auto& c : img->captions)
      data.train.push_back({static_cast<int64_t>(*row), vocab.encode(c.tokens)});
  }
  for (const ImageEntry* img : dataset.split("val")) {
    auto row = store.row_of(img->key);
    if (!row || store.state(*row) != RowState::written) {
      ++missing;
      continue;
    }
    ValidationImage v;
    v.id = std::to_string(img->id);
    v.feature_row = static_cast<int64_t>(*row);
    for (const auto& c : img->captions) v.references.push_back(c.raw);
    data.val.push_back(std::move(v));
  }
  if (missing > 0)
    std::cerr << "warning: " << missing << " train/val images have no features in " << store_dir.string()
              << " (not prepared, or unreadable); they are left out\n";
  if (data.train.empty())
    throw InputError(command.data + ": no training captions with features (does the dataset have a \"train\" split, "
                                    "and was " + store_dir.string() + " prepared from it?)");
  data.gather = [&store](const std::vector<int64_t>& rows) { return store.gather(rows); };
  say("training on " + std::to_string(data.train.size()) + " captions, validating on " +
      std::to_string(data.val.size()) + " images; vocabulary " + std::to_string(vocab.size()) + " words");

  // The decoder: new, or with the options of the checkpoint being resumed.
  DecoderOptions dopts;
  if (options.resume) {
    auto meta = read_checkpoint_meta(out / "checkpoint.pt");
    dopts = meta.at("decoder").get<DecoderOptions>();
  } else {
    dopts = decoder_options_for(options, static_cast<int>(vocab.size()), store.dim(), store.regions());
  }
  if (dopts.vocab_size != static_cast<int>(vocab.size()) || dopts.feature_dim != store.dim())
    throw UsageError("--resume: the checkpoint's decoder (vocabulary " + std::to_string(dopts.vocab_size) +
                     ", feature dim " + std::to_string(dopts.feature_dim) + ") does not fit the data (vocabulary " +
                     std::to_string(vocab.size()) + ", feature dim " + std::to_string(store.dim()) + ")");
  at::manual_seed(options.seed);
  Decoder decoder(dopts);

  nlohmann::json effective = to_json(options);
  effective["data"] = command.data;
  effective["features"] = store_dir.string();
  effective["encoder"] = store.encoder_identity();
  effective["min_word_count"] = command.min_word_count;
  effective["decoder"] = dopts;
  write_file_atomic(out / "config.effective.json", effective.dump(2) + "\n");

  Bundle bundle;
  bundle.encoder = store.encoder_description();
  if (!bundle.encoder.is_object() || !bundle.encoder.contains("identity"))
    bundle.encoder = {{"identity", store.encoder_identity()}};
  bundle.decoder_options = dopts;
  bundle.vocab = vocab;
  bundle.satcap_version = SATCAP_VERSION;
  const fs::path model_dir = out / "model";
  auto keep = [&](Decoder& d, const TrainSummary& s) {
    bundle.decoder = d;
    bundle.training = {{"summary", summary_json(s)},
                       {"options", to_json(options)},
                       {"data", command.data},
                       {"train_captions", data.train.size()},
                       {"val_images", data.val.size()}};
    save_bundle(bundle, model_dir);
  };
  TrainHooks hooks;
  hooks.on_best = keep;
  hooks.on_final = keep;
  TrainSummary summary = train_decoder(decoder, data, vocab, options, out, hooks, device, quiet);
  if (command.eval_test) {
    TrainingData test;
    test.gather = data.gather;
    for (const ImageEntry* img : dataset.split("test")) {
      auto row = store.row_of(img->key);
      if (!row || store.state(*row) != RowState::written) continue;
      ValidationImage v;
      v.id = std::to_string(img->id);
      v.feature_row = static_cast<int64_t>(*row);
      for (const auto& c : img->captions) v.references.push_back(c.raw);
      test.val.push_back(std::move(v));
    }
    if (!test.val.empty() && fs::exists(model_dir / "config.json")) {
      Bundle best = load_bundle(model_dir, store.encoder_identity(), device);
      TrainOptions test_options = options;
      test_options.val_max_images = 0;
      std::map<std::string, std::string> captions;
      auto scores = validate_decoder(best.decoder, test, best.vocab, test_options, device, &captions);
      nlohmann::json record = {{"split", "test"}, {"images", captions.size()}, {"beam_size", options.val_beam_size},
                               {"scores", scores}, {"model", model_dir.string()}};
      write_file_atomic(out / "test_scores.json", record.dump(2) + "\n");
      std::string line = "test split (" + std::to_string(captions.size()) + " images):";
      for (auto& [k, v] : scores) line += " " + k + " " + std::to_string(v);
      say(line);
    }
  }
  say("model written to " + model_dir.string() + " (best validation BLEU-4 " + std::to_string(summary.best_bleu4) +
      " at epoch " + std::to_string(summary.best_epoch) + ", " + std::to_string(summary.steps) + " steps, " +
      format_duration(summary.seconds) + ")");
  return summary;
}

}  // namespace satcap
