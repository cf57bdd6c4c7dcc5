#include "satcap/train/run_training.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <optional>

#include "satcap/build_config.h"
#include "satcap/data/dataset.h"
#include "satcap/data/feature_store.h"
#include "satcap/data/image.h"
#include "satcap/data/prepare.h"
#include "satcap/decode/captioner.h"
#include "satcap/dist/communicator.h"
#include "satcap/model/bundle.h"
#include "satcap/model/encoder.h"
#include "satcap/model/vocab.h"
#include "satcap/runtime/cpu_allocator.h"
#include "satcap/runtime/atomic_file.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "satcap/runtime/runtime.h"
#include "satcap/runtime/torch_error.h"
#include "satcap/train/checkpoint.h"
#include "satcap/train/training_log.h"

namespace fs = std::filesystem;

namespace satcap {

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
          {"stopped_early", s.stopped_early},
          {"processes", s.processes}};
}

std::string list_of(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// The --out folder before a run starts: a new run needs a folder without another run in it (or
// --overwrite, which deletes that run's files), --resume a folder with its checkpoint. Leftovers
// of a killed run (temporary files of dead processes, a bundle half swapped) are cleaned up.
void prepare_run_folder(const fs::path& out, const TrainCommandOptions& command, bool resume) {
  if (resume && command.overwrite)
    throw UsageError("--resume and --overwrite contradict each other: continue the run in " + out.string() +
                     ", or delete it and start over");
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec)) throw UsageError("--out " + out.string() + ": exists and is not a folder");
  if (fs::is_directory(out, ec)) {
    remove_stale_temporaries_in(out, {".tmp-", ".old-"});
    recover_interrupted_bundle(out / "model");
    remove_stale_temporaries_in(out / "features");
  }
  if (resume) return;  // read_checkpoint_meta says when there is nothing to resume
  std::vector<std::string> run_files, other;
  const auto& names = run_file_names();
  fs::path features = command.features.empty() ? out / "features" : fs::path(command.features);
  for (fs::directory_iterator it(out, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (std::find(names.begin(), names.end(), name) != names.end()) run_files.push_back(name);
    else if (std::error_code same_ec; name != "features" && !fs::equivalent(it->path(), features, same_ec))
      other.push_back(name);
  }
  if (!run_files.empty() && !command.overwrite) {
    std::string state = "an unfinished run";
    if (fs::exists(out / "checkpoint.pt")) {
      try {
        const nlohmann::json meta = read_checkpoint_meta(out / "checkpoint.pt");
        state = "a run (checkpoint at step " + std::to_string(meta.at("progress").value("step", int64_t{0})) + ")";
      } catch (const std::exception&) {
      }
    }
    if (fs::exists(out / "model" / "config.json")) state += " with a trained model";
    throw UsageError("--out " + out.string() + " holds " + state + " (" + list_of(run_files) +
                     "): continue it with --resume, or give --overwrite to delete it (" + list_of(run_files) +
                     ") and start a new run; a features/ store is kept either way");
  }
  if (!other.empty() && !command.overwrite)
    throw UsageError("--out " + out.string() + ": folder is not empty and holds no satcap training run (found " +
                     other.front() + "); choose a new or empty folder, or give --overwrite to write into it (files "
                     "that are not a run's are kept)");
  for (const auto& name : run_files) {
    fs::remove_all(out / name, ec);
    if (ec) throw OutputError((out / name).string() + ": cannot delete the earlier run's file (" + ec.message() + ")");
  }
}

}  // namespace

const std::vector<std::string>& run_file_names() {
  static const std::vector<std::string> names = {"model",       "checkpoint.pt",         "train_log.jsonl",
                                                 "curves.png",  "config.effective.json", "vocab.json",
                                                 "test_scores.json"};
  return names;
}

TrainSummary run_training(const TrainCommandOptions& command, const TrainOptions& options_given, c10::Device device,
                          bool quiet, Communicator* comm) {
  TrainOptions options = options_given;
  // Data-parallel: every process loads the data; rank 0 alone writes into the output folder.
  const bool main = !comm || comm->is_main();
  validate(options);
  if (options.fine_tune_encoder && !command.features.empty())
    throw UsageError("--features cannot be used with --fine-tune-encoder: the encoder's features change as it "
                     "trains, so training reads the images; drop --features");
  if (command.data.empty()) throw UsageError("--data is required");
  if (command.out.empty()) throw UsageError("--out is required");
  if (command.min_word_count < 1)
    throw UsageError("--min-word-count must be at least 1 (got " + std::to_string(command.min_word_count) + ")");
  const fs::path out = command.out;
  if (main) {
    prepare_run_folder(out, command, options.resume);
    std::error_code ec;
    fs::create_directories(out, ec);
    if (!fs::is_directory(out)) throw OutputError(out.string() + ": cannot create the output folder");
  }

  auto say = [&](const std::string& line) {
    if (!quiet && main) std::cerr << line << "\n";
  };
  auto warn = [&](const std::string& line) {
    if (main) std::cerr << "warning: " << line << "\n";
  };

  // A resumed run goes on with its own options, those given now applied where they may change.
  nlohmann::json resumed_meta;
  if (options.resume) {
    const fs::path checkpoint = out / "checkpoint.pt";
    // Data-parallel: rank 0 reads it and sends it on (the others may not see its folder).
    if (comm)
      resumed_meta = nlohmann::json::parse(comm->broadcast_bytes(main ? read_checkpoint_meta(checkpoint).dump() : ""));
    else
      resumed_meta = read_checkpoint_meta(checkpoint);
    if (resumed_meta.contains("options")) {
      ResumedOptions r = resume_options(resumed_meta["options"], options, command.given_options, checkpoint.string());
      options = r.options;
      validate(options);
      for (const auto& change : r.applied)
        if (main) std::cerr << "note: --resume applies " << change << "\n";
    } else {
      warn(checkpoint.string() + " was written by a satcap that did not record its options; "
           "the options given now are used (only the batch size and seed are checked)");
    }
  }

  Dataset dataset = load_dataset(command.data);
  ProtectedInputs inputs;  // no output of the run may replace its dataset file
  inputs.add(fs::path(dataset.source), "the dataset file");
  for (const auto& w : dataset.warnings) warn(w);

  // What the decoder trains on: a feature store (given, or prepared here with the encoder), or with
  // fine_tune_encoder the images themselves, encoded at each step by the encoder being tuned.
  fs::path store_dir = command.features.empty() ? out / "features" : fs::path(command.features);
  std::optional<FeatureStore> store_holder;
  std::unique_ptr<Encoder> tuned;                 // fine-tuning: the encoder being trained
  std::vector<fs::path> image_paths;              // fine-tuning: row -> image file
  std::map<std::string, int64_t> image_rows;      // fine-tuning: image key -> row
  if (options.fine_tune_encoder) {
    EncoderOptions eo;
    eo.source = command.encoder;
    eo.trainable_blocks = options.fine_tune_blocks;
    tuned = load_encoder(eo);
    tuned->to(device);
    for (const char* split : {"train", "val", "test"}) {
      for (const ImageEntry* img : dataset.split(split)) {
        if (image_rows.count(img->key)) continue;
        if (!fs::is_regular_file(img->path)) continue;  // reported below as left out
        image_rows[img->key] = static_cast<int64_t>(image_paths.size());
        image_paths.push_back(img->path);
      }
    }
    say("fine-tuning the last " + std::to_string(options.fine_tune_blocks) + " blocks of encoder " + tuned->identity() +
        " (" + std::to_string(tuned->trainable_parameters().size()) + " tensors) on " +
        std::to_string(image_paths.size()) + " images");
  }
  // The rows the run reads: every image of the splits it uses that has a row in the store.
  auto used_rows = [&](const FeatureStore& store) {
    std::vector<std::pair<std::size_t, fs::path>> rows;
    for (const char* split : {"train", "val", "test"})
      for (const ImageEntry* img : dataset.split(split))
        if (auto row = store.row_of(img->key)) rows.emplace_back(*row, img->path);
    return rows;
  };
  // Without --features: a feature store prepared into <out>/features (by rank 0 alone, the others
  // waiting for it as long as it takes; they then read it, which on several machines needs <out>
  // on a shared folder, or --features prepared on each).
  auto prepare_store = [&] {
    if (fs::exists(store_dir / "meta.json")) {
      try {  // prepared by an earlier run into <out>/features (a resume, or a second training)
        FeatureStore store = FeatureStore::open(store_dir);
        // Images changed since: prepare_features below encodes them again.
        if (store.complete() && find_changed_sources(store, used_rows(store)).changed.empty()) return;
      } catch (const Error&) {
        // incomplete or mismatched: prepare_features resumes or reports it
      }
    }
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
    for (const auto& f : ps.failures) warn(f + " (image skipped)");
  };
  if (!tuned && command.features.empty()) {
    if (comm) comm->run_on_main("features", prepare_store);
    else prepare_store();
  }
  if (!tuned) {
    store_holder.emplace(FeatureStore::open(store_dir));
    require_current_sources(*store_holder, used_rows(*store_holder), warn);
  }
  // The row of an image in the feature source, if it has one.
  auto row_of = [&](const ImageEntry& img) -> std::optional<int64_t> {
    if (tuned) {
      auto it = image_rows.find(img.key);
      if (it == image_rows.end()) return std::nullopt;
      return it->second;
    }
    auto row = store_holder->row_of(img.key);
    if (!row || store_holder->state(*row) != RowState::written) return std::nullopt;
    return static_cast<int64_t>(*row);
  };
  const std::string source_name = tuned ? "the dataset's images" : store_dir.string();
  const int feature_dim = tuned ? tuned->dim() : store_holder->dim();
  const int regions = tuned ? tuned->regions() : store_holder->regions();
  const std::string encoder_identity = tuned ? tuned->identity() : store_holder->encoder_identity();

  // The vocabulary: from the training split, kept beside the checkpoint for resuming.
  const fs::path vocab_path = out / "vocab.json";
  Vocabulary vocab;
  // Resuming: the run's own vocabulary (data-parallel: as rank 0 read it); else built from the data
  // (by every process alike) and saved.
  std::optional<Vocabulary> kept;
  if (options.resume && !comm && fs::exists(vocab_path)) kept = Vocabulary::load(vocab_path);
  if (options.resume && comm) {
    const std::string text =
        comm->broadcast_bytes(main && fs::exists(vocab_path) ? Vocabulary::load(vocab_path).to_json().dump() : "");
    if (!text.empty()) kept = Vocabulary::from_json(nlohmann::json::parse(text), vocab_path.string());
  }
  if (kept) {
    vocab = *kept;
  } else {
    VocabOptions vo;
    vo.min_count = command.min_word_count;
    vo.max_length = options.max_train_length > 0 ? options.max_train_length : 1000000;
    vocab = Vocabulary::build(dataset, vo, "train");
    if (main) vocab.save(vocab_path);
  }

  // Captions and validation images with their feature rows.
  TrainingData data;
  std::size_t missing = 0;
  for (const ImageEntry* img : dataset.split("train")) {
    auto row = row_of(*img);
    if (!row) {
      ++missing;
      continue;
    }
    for (const auto& c : img->captions) data.train.add(*row, vocab.encode(c.tokens()));
  }
  data.train.shrink_to_fit();
  // The images of a split that have features, with their reference captions.
  auto scored_images = [&](const std::string& split, std::size_t* without_features) {
    std::vector<ValidationImage> images;
    for (const ImageEntry* img : dataset.split(split)) {
      auto row = row_of(*img);
      if (!row) {
        if (without_features) ++*without_features;
        continue;
      }
      ValidationImage v;
      v.id = std::to_string(img->id);
      v.feature_row = *row;
      for (const auto& c : img->captions) v.references.push_back(c.raw);
      images.push_back(std::move(v));
    }
    return images;
  };
  data.val = scored_images("val", &missing);
  std::vector<ValidationImage> test_images;  // scored at the end
  if (command.eval_test) test_images = scored_images("test", nullptr);
  // Everything training needs is copied out: the dataset's text is released, and with it the
  // memory that would otherwise grow with the dataset for the whole run.
  dataset = Dataset{};
  release_free_memory();
  if (missing > 0 && tuned)
    warn(std::to_string(missing) + " train/val images are missing (no such file); they are left out");
  else if (missing > 0)
    warn(std::to_string(missing) + " train/val images have no features in " + store_dir.string() +
         " (not prepared, or unreadable); they are left out");
  if (data.train.empty())
    throw InputError(command.data + ": no training captions with features (does the dataset have a \"train\" split, "
                                    "and was " + source_name + " prepared from it?)");
  // Fine-tuning: images are read and preprocessed for rows (on the trainer's worker thread).
  auto images_of = [&image_paths](Encoder* encoder) {
    const ImageLimits limits = encoder->read_limits();  // as prepare and caption read them
    return [&image_paths, encoder, limits](const std::vector<int64_t>& rows) {
      std::vector<cv::Mat> rgb;
      for (int64_t r : rows) rgb.push_back(read_image_rgb(image_paths[static_cast<std::size_t>(r)], limits));
      return encoder->preprocess(rgb);  // [B, 3, H, W]
    };
  };
  if (tuned) {
    data.encoder = tuned.get();
    data.images = images_of(tuned.get());
  } else {
    data.gather = [&store_holder](const std::vector<int64_t>& rows) { return store_holder->gather(rows); };
  }
  say("training on " + std::to_string(data.train.size()) + " captions, validating on " +
      std::to_string(data.val.size()) + " images; vocabulary " + std::to_string(vocab.size()) + " words");

  // The decoder: new, or with the options of the checkpoint being resumed.
  DecoderOptions dopts;
  if (options.resume) {  // data-parallel: as rank 0 read it (resumed_meta, above)
    if (!resumed_meta.contains("decoder") || !resumed_meta["decoder"].is_object())
      throw ModelError((out / "checkpoint.pt").string() + ": malformed: the decoder's options are missing");
    try {
      dopts = resumed_meta["decoder"].get<DecoderOptions>();
    } catch (const Error& e) {
      throw ModelError((out / "checkpoint.pt").string() + ": " + e.what());
    }
  } else {
    dopts = decoder_options_for(options, static_cast<int>(vocab.size()), feature_dim, regions);
  }
  if (dopts.vocab_size != static_cast<int>(vocab.size()) || dopts.feature_dim != feature_dim)
    throw UsageError("--resume: the checkpoint's decoder (vocabulary " + std::to_string(dopts.vocab_size) +
                     ", feature dim " + std::to_string(dopts.feature_dim) + ") does not fit the data (vocabulary " +
                     std::to_string(vocab.size()) + ", feature dim " + std::to_string(feature_dim) + ")");
  // Large tensors from satcap's block cache from here on, unless the encoder runs in every step
  // (see satcap/runtime/cpu_allocator.h: its forward is faster on glibc's heap). Features prepared above
  // have been written already.
  if (!tuned) install_cpu_allocator();
  at::manual_seed(options.seed);
  Decoder decoder{nullptr};
  try {
    decoder = Decoder(dopts);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    if (!is_out_of_memory(e)) throw;
    throw UsageError("the decoder of " + std::to_string(static_cast<long long>(dopts.parameter_count())) +
                     " parameters does not fit in memory (" + exception_text(e) +
                     "); choose smaller --hidden-dim, --embed-dim and --attention-dim");
  }

  // The options in force, readable again with --config; "run" says what they ran on.
  TrainOptions in_force = options;
  in_force.decoder = dopts;  // a resumed run keeps its checkpoint's decoder
  nlohmann::json effective = to_json(in_force);
  effective["run"] = {{"data", command.data},
                      {"features", tuned ? std::string() : store_dir.string()},
                      {"encoder", encoder_identity},
                      {"min_word_count", command.min_word_count},
                      {"vocab_size", dopts.vocab_size},
                      {"feature_dim", dopts.feature_dim},
                      {"regions", dopts.regions},
                      {"processes", comm ? comm->size() : 1}};
  if (main) write_file_atomic(out / "config.effective.json", effective.dump(2) + "\n");

  Bundle bundle;
  bundle.encoder = tuned ? tuned->describe() : store_holder->encoder_description();  // before tuning: no tag
  if (!bundle.encoder.is_object() || !bundle.encoder.contains("identity"))
    bundle.encoder = {{"identity", encoder_identity}};
  bundle.decoder_options = dopts;
  bundle.vocab = vocab;
  bundle.satcap_version = SATCAP_VERSION;
  const fs::path model_dir = out / "model";
  auto keep = [&](Decoder& d, const TrainSummary& s) {
    bundle.decoder = d;
    if (tuned) {  // the encoder's tuned blocks as they are now (copies: training goes on)
      bundle.encoder_weights.clear();
      for (auto& [name, t] : tuned->named_trainable_parameters())
        bundle.encoder_weights[name] = t.detach().to(c10::kCPU).clone();
    }
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
  TrainSummary summary = train_decoder(decoder, data, vocab, options, out, hooks, device, quiet, comm);
  // The other processes are done; rank 0 scores the best model on the test split alone (it reads
  // the bundle it wrote).
  if (!main) return summary;
  if (command.eval_test) {
    TrainingData test;
    test.gather = data.gather;
    test.val = std::move(test_images);
    if (!test.val.empty() && fs::exists(model_dir / "config.json")) {
      Bundle best = load_bundle(model_dir, tuned ? std::string() : encoder_identity, device);
      std::unique_ptr<Encoder> best_encoder;  // fine-tuning: the encoder as the best model saved it
      if (tuned) {
        best_encoder = load_bundle_encoder(best, "", device);
        test.encoder = best_encoder.get();
        test.images = images_of(best_encoder.get());
      }
      TrainOptions test_options = options;
      test_options.val_max_images = 0;
      std::map<std::string, std::string> captions;
      auto scores = validate_decoder(best.decoder, test, best.vocab, test_options, device, &captions);
      nlohmann::json record = {{"split", "test"}, {"images", captions.size()}, {"beam_size", options.validation.beam_size},
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
