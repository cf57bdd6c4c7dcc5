// The training loop (see trainer.h). Model code stays device-generic: batches go to `device`.
#include "satcap/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adam.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/utils.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <future>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

#include "satcap/decode/search.h"
#include "satcap/eval/metrics.h"
#include "satcap/model/bundle.h"
#include "satcap/model/encoder.h"
#include "satcap/model/named_tensors.h"
#include "satcap/model/vocab.h"
#include "satcap/ops/adam_step.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/loss_scaler.h"
#include "satcap/train/training_log.h"

namespace fs = std::filesystem;

namespace satcap {

// The newest checkpoint format read and written: 2 holds a fine-tuned encoder's tensors and Adam
// state (written only when fine-tuning; checkpoints of a frozen encoder stay format 1).
constexpr int kCheckpointFormatVersion = 2;

void TrainingCaptions::add(int64_t feature_row, const std::vector<int64_t>& tokens) {
  for (int64_t id : tokens)
    if (id < 0 || id > std::numeric_limits<int32_t>::max())
      throw std::invalid_argument("training caption: token id " + std::to_string(id) + " is outside [0, 2^31)");
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  starts_.push_back(tokens_.size());
  rows_.push_back(feature_row);
}

void TrainingCaptions::shrink_to_fit() {
  rows_.shrink_to_fit();
  starts_.shrink_to_fit();
  tokens_.shrink_to_fit();
}

DecoderOptions decoder_options_for(const TrainOptions& o, int vocab_size, int feature_dim, int regions) {
  DecoderOptions d = o.decoder;
  d.vocab_size = vocab_size;
  d.feature_dim = feature_dim;
  d.regions = regions;
  d.validate();
  return d;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Signals: SIGINT/SIGTERM ask the loop to checkpoint and stop.

volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

class SignalGuard {
 public:
  SignalGuard() {
    g_stop_signal = 0;
    old_int_ = std::signal(SIGINT, on_stop_signal);
    old_term_ = std::signal(SIGTERM, on_stop_signal);
  }
  ~SignalGuard() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }

 private:
  void (*old_int_)(int);
  void (*old_term_)(int);
};

// ---------------------------------------------------------------------------------------------
// Data order: a permutation of the training captions that depends only on (seed, epoch), so a
// resumed run sees the same order without storing it.

std::vector<int64_t> epoch_order(std::size_t n, uint64_t seed, int epoch) {
  std::vector<int64_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<int64_t>(i);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 1);
  for (std::size_t i = n; i > 1; --i) {  // Fisher-Yates with the generator's raw output (portable)
    std::size_t j = static_cast<std::size_t>(rng() % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

struct Batch {
  std::vector<int64_t> rows;  // feature (or image) row of each caption
  at::Tensor features;  // [B, n, D] (fine-tuning: computed by the encoder, not here)
  at::Tensor captions;  // [B, T] int64
  at::Tensor lengths;   // [B] int64
};

// Fine-tuning: the network input of a batch's distinct images and, per caption, its image's
// position among them (images with several captions in the batch are encoded once).
struct ImageBatch {
  at::Tensor input;  // [U, 3, H, W]
  at::Tensor index;  // [B] int64
};

ImageBatch load_images(const TrainingData& data, const std::vector<int64_t>& rows) {
  std::vector<int64_t> distinct, index;
  std::map<int64_t, int64_t> position;
  for (int64_t r : rows) {
    auto [it, added] = position.emplace(r, static_cast<int64_t>(distinct.size()));
    if (added) distinct.push_back(r);
    index.push_back(it->second);
  }
  return {data.images(distinct), at::tensor(index, at::kLong)};
}

// Region features of `rows` on `device`: gathered from the feature source, or encoded from the
// images by the encoder being fine-tuned (with autograd when grad mode is on). [B, n, D]
at::Tensor features_of(const TrainingData& data, const std::vector<int64_t>& rows, c10::Device device,
                       ImageBatch* loaded = nullptr) {
  if (!data.encoder) return data.gather(rows).to(device, at::kFloat);
  ImageBatch images = loaded ? std::move(*loaded) : load_images(data, rows);
  at::Tensor h = data.encoder->forward(images.input.to(device));  // [U, n, D]
  return h.index_select(0, images.index.to(device));             // [B, n, D]
}

// A caption's length as trained: at most max_train_length words (0: all) between <start> and <end>.
std::size_t trained_length(const TrainingCaption& c, int max_train_length) {
  return max_train_length > 0 ? std::min(c.length, static_cast<std::size_t>(max_train_length) + 2) : c.length;
}

// Its tokens: the first trained_length of them, the last one <end> where the caption was cut.
std::vector<int64_t> trained_tokens(const TrainingCaption& c, int max_train_length) {
  const std::size_t n = trained_length(c, max_train_length);
  std::vector<int64_t> t(c.tokens, c.tokens + n);
  if (n < c.length) t.back() = Vocabulary::end_id;
  return t;
}

// The captions order[begin..end) of an epoch as one batch: indices into data.train, longest caption
// first (stable), the order the decoder runs its rows in, so that it need not copy the batch's
// features into that order ([B, n, D], 103 MB at COCO scale) every step. The fine-tuning prefetch
// reads the same list.
std::vector<int64_t> batch_captions(const TrainingData& data, const std::vector<int64_t>& order, int64_t begin,
                                    int64_t end, int max_train_length) {
  auto length = [&](int64_t c) { return trained_length(data.train[static_cast<std::size_t>(c)], max_train_length); };
  std::vector<int64_t> captions(order.begin() + begin, order.begin() + end);
  std::stable_sort(captions.begin(), captions.end(), [&](int64_t a, int64_t b) { return length(a) > length(b); });
  return captions;
}

Batch make_batch(const TrainingData& data, const std::vector<int64_t>& order, int64_t begin, int64_t end,
                 int max_train_length, c10::Device device) {
  std::vector<int64_t> rows;
  std::vector<std::vector<int64_t>> caps;
  for (int64_t i : batch_captions(data, order, begin, end, max_train_length)) {
    const TrainingCaption c = data.train[static_cast<std::size_t>(i)];
    rows.push_back(c.feature_row);
    caps.push_back(trained_tokens(c, max_train_length));
  }
  int64_t B = static_cast<int64_t>(caps.size()), T = 0;
  for (auto& c : caps) T = std::max<int64_t>(T, static_cast<int64_t>(c.size()));
  auto captions = at::full({B, T}, Vocabulary::pad_id, at::kLong);
  auto lengths = at::empty({B}, at::kLong);
  auto ca = captions.accessor<int64_t, 2>();
  auto la = lengths.accessor<int64_t, 1>();
  for (int64_t b = 0; b < B; ++b) {
    la[b] = static_cast<int64_t>(caps[b].size());
    for (std::size_t t = 0; t < caps[b].size(); ++t) ca[b][static_cast<int64_t>(t)] = caps[b][t];
  }
  Batch batch;
  if (!data.encoder) batch.features = data.gather(rows).to(device, at::kFloat);
  batch.rows = std::move(rows);
  batch.captions = captions.to(device);
  batch.lengths = lengths.to(device);
  return batch;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

struct Progress {
  int epoch = 0;          // current epoch (0-based)
  int64_t batch = 0;      // next batch within the epoch
  int64_t step = 0;       // optimizer steps done
  double lr = 0;
  double encoder_lr = 0;  // fine-tuning: the encoder's learning rate
  double best_bleu4 = -1;
  int best_epoch = 0;
  std::map<std::string, double> best_scores;
  int since_best = 0;     // validations without improvement
  bool early_stopped = false;
  int epochs_completed = 0;
  // --precision fp16: the loss scaler's state (satcap/runtime/precision.h) and the steps it skipped.
  double loss_scale = 0;  // 0 = not set (a new run, or a checkpoint without it)
  int64_t loss_scale_good_steps = 0;
  int64_t skipped_steps = 0;

  nlohmann::json to_json() const {
    return {{"epoch", epoch},         {"batch", batch},
            {"step", step},           {"lr", lr}, {"encoder_lr", encoder_lr},
            {"best_bleu4", best_bleu4}, {"best_epoch", best_epoch},
            {"best_scores", best_scores}, {"since_best", since_best},
            {"early_stopped", early_stopped}, {"epochs_completed", epochs_completed},
            {"loss_scale", loss_scale}, {"loss_scale_good_steps", loss_scale_good_steps},
            {"skipped_steps", skipped_steps}};
  }
  void from_json(const nlohmann::json& j) {
    epoch = j.at("epoch").get<int>();
    batch = j.at("batch").get<int64_t>();
    step = j.at("step").get<int64_t>();
    lr = j.at("lr").get<double>();
    encoder_lr = j.value("encoder_lr", 0.0);
    best_bleu4 = j.at("best_bleu4").get<double>();
    best_epoch = j.at("best_epoch").get<int>();
    best_scores = j.at("best_scores").get<std::map<std::string, double>>();
    since_best = j.at("since_best").get<int>();
    early_stopped = j.at("early_stopped").get<bool>();
    epochs_completed = j.at("epochs_completed").get<int>();
    loss_scale = j.value("loss_scale", 0.0);  // absent in checkpoints of satcap before --precision
    loss_scale_good_steps = j.value("loss_scale_good_steps", int64_t{0});
    skipped_steps = j.value("skipped_steps", int64_t{0});
  }
};

bool all_finite(const torch::nn::Module& module, Encoder* encoder) {
  for (auto& p : module.parameters())
    if (!at::isfinite(p).all().item<bool>()) return false;
  if (encoder)
    for (auto& p : encoder->trainable_parameters())
      if (!at::isfinite(p).all().item<bool>()) return false;
  return true;
}

void set_lr(torch::optim::Adam& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
}

void save_checkpoint(const fs::path& path, Decoder& decoder, torch::optim::Adam& optimizer,
                     torch::optim::Adam* encoder_optimizer, const Progress& p, const TrainingData& data,
                     const TrainOptions& options, c10::Device device) {
  nlohmann::json meta = {{"format_version", data.encoder ? kCheckpointFormatVersion : 1},
                         {"progress", p.to_json()},
                         {"decoder", decoder->options()},
                         {"train_captions", data.train.size()},
                         {"batch_size", options.batch_size},
                         {"seed", options.seed}};
  std::vector<std::pair<std::string, at::Tensor>> encoder_tensors;
  if (data.encoder) {
    encoder_tensors = data.encoder->named_trainable_parameters();
    meta["fine_tune"] = {{"encoder", data.encoder->identity()}, {"tensors", encoder_tensors.size()}};
  }
  torch::serialize::OutputArchive archive;
  archive.write("meta", c10::IValue(meta.dump()));
  write_named_tensors(archive, *decoder, "model.");
  torch::serialize::OutputArchive opt_archive;
  optimizer.save(opt_archive);
  archive.write("optimizer", opt_archive);
  if (data.encoder) {
    for (auto& [name, t] : encoder_tensors) archive.write("encoder." + name, t.detach().to(c10::kCPU));
    torch::serialize::OutputArchive encoder_opt_archive;
    encoder_optimizer->save(encoder_opt_archive);
    archive.write("encoder_optimizer", encoder_opt_archive);
  }
  archive.write("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
  if (!device.is_cpu()) archive.write("rng.device", at::globalContext().defaultGenerator(device).get_state());
  write_archive_atomic(path, archive);
}

}  // namespace

// Reads the meta record of a checkpoint (for run_training: the decoder options of a resumed model).
nlohmann::json read_checkpoint_meta(const fs::path& path) {
  if (!fs::exists(path))
    throw UsageError("--resume: " + path.string() + " does not exist (nothing to resume; drop --resume to start)");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string());
  } catch (const std::exception& e) {
    throw ModelError(path.string() + ": not a readable satcap checkpoint (truncated or corrupt)");
  }
  c10::IValue meta_value;
  if (!archive.try_read("meta", meta_value) || !meta_value.isString())
    throw ModelError(path.string() + ": not a satcap checkpoint (no meta record)");
  auto meta = nlohmann::json::parse(meta_value.toStringRef(), nullptr, false);
  if (meta.is_discarded() || !meta.is_object()) throw ModelError(path.string() + ": malformed checkpoint meta record");
  int v = meta.value("format_version", 0);
  if (v > kCheckpointFormatVersion)
    throw ModelError(path.string() + ": this checkpoint was written by a newer satcap (format " + std::to_string(v) +
                     " > " + std::to_string(kCheckpointFormatVersion) + "); upgrade satcap");
  return meta;
}

namespace {

Progress load_checkpoint(const fs::path& path, Decoder& decoder, torch::optim::Adam& optimizer,
                         torch::optim::Adam* encoder_optimizer, const TrainingData& data, const TrainOptions& options,
                         c10::Device device) {
  nlohmann::json meta = read_checkpoint_meta(path);
  const bool tuned = meta.contains("fine_tune");
  if (tuned != (data.encoder != nullptr))
    throw UsageError("--resume: " + path.string() + " was written " + (tuned ? "with" : "without") +
                     " --fine-tune-encoder; resume with the same options");
  if (tuned && meta["fine_tune"].value("encoder", std::string()) != data.encoder->identity())
    throw UsageError("--resume: " + path.string() + " fine-tuned encoder '" + meta["fine_tune"].value("encoder", std::string()) +
                     "', the encoder now is '" + data.encoder->identity() +
                     "'; resume with the same --encoder and --fine-tune-blocks");
  if (meta.value("train_captions", std::size_t{0}) != data.train.size())
    throw UsageError("--resume: " + path.string() + " was written for " +
                     std::to_string(meta.value("train_captions", std::size_t{0})) + " training captions, the data now has " +
                     std::to_string(data.train.size()) + "; resume with the same dataset and features");
  if (meta.value("batch_size", 0) != options.batch_size)
    throw UsageError("--resume: " + path.string() + " was written with batch size " +
                     std::to_string(meta.value("batch_size", 0)) + "; resume with the same --batch (got " +
                     std::to_string(options.batch_size) + ")");
  if (meta.value("seed", uint64_t{0}) != options.seed)
    throw UsageError("--resume: " + path.string() + " was written with seed " +
                     std::to_string(meta.value("seed", uint64_t{0})) + "; resume with the same --seed");
  torch::serialize::InputArchive archive;
  archive.load_from(path.string(), device);
  read_named_tensors(archive, *decoder, path.string(), "model.");
  torch::serialize::InputArchive opt_archive;
  if (!archive.try_read("optimizer", opt_archive)) throw ModelError(path.string() + ": optimizer state missing");
  optimizer.load(opt_archive);
  if (tuned) {
    at::NoGradGuard no_grad;
    for (auto& [name, target] : data.encoder->named_trainable_parameters()) {
      at::Tensor value;
      if (!archive.try_read("encoder." + name, value))
        throw ModelError(path.string() + ": fine-tuned encoder tensor '" + name + "' is missing");
      if (value.sizes() != target.sizes())
        throw ModelError(path.string() + ": fine-tuned encoder tensor '" + name + "' has wrong shape: got " +
                         shape_text(value.sizes()) + ", expected " + shape_text(target.sizes()));
      target.copy_(value);
    }
    torch::serialize::InputArchive encoder_opt_archive;
    if (!archive.try_read("encoder_optimizer", encoder_opt_archive))
      throw ModelError(path.string() + ": the encoder's optimizer state is missing");
    encoder_optimizer->load(encoder_opt_archive);
  }
  at::Tensor rng;
  if (!archive.try_read("rng.cpu", rng)) throw ModelError(path.string() + ": random state missing");
  at::Generator cpu_generator = at::detail::getDefaultCPUGenerator();  // a handle on the global generator
  cpu_generator.set_state(rng.cpu());
  if (!device.is_cpu() && archive.try_read("rng.device", rng)) {
    at::Generator device_generator = at::globalContext().defaultGenerator(device);
    device_generator.set_state(rng.cpu());
  }
  Progress p;
  try {
    p.from_json(meta.at("progress"));
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(path.string() + ": malformed progress record: " + e.what());
  }
  return p;
}

double scalar(const at::Tensor& t) { return t.defined() ? t.item<double>() : 0.0; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Validation: real decoding, scored like the official evaluation.

namespace {

}  // namespace

std::map<std::string, double> validate_decoder(Decoder& decoder, const TrainingData& data, const Vocabulary& vocab,
                                               const TrainOptions& options, c10::Device device,
                                               std::map<std::string, std::string>* captions_out) {
  std::size_t n = data.val.size();
  if (options.val_max_images > 0) n = std::min(n, static_cast<std::size_t>(options.val_max_images));
  if (n == 0) return {};
  bool was_training = decoder->is_training();
  decoder->eval();
  at::NoGradGuard no_grad;
  std::map<std::string, std::vector<std::string>> references;
  std::map<std::string, std::string> candidates;
  const SearchOptions& search_options = options.validation;
  search_options.validate("--val-");
  SearchTokens tokens;
  tokens.start = Vocabulary::start_id;
  tokens.end = Vocabulary::end_id;
  tokens.banned = {Vocabulary::pad_id, Vocabulary::start_id};
  const std::size_t chunk = data.encoder ? 16 : 64;  // images through the whole encoder: smaller chunks
  for (std::size_t begin = 0; begin < n; begin += chunk) {
    std::size_t end = std::min(n, begin + chunk);
    std::vector<int64_t> rows;
    for (std::size_t i = begin; i < end; ++i) rows.push_back(data.val[i].feature_row);
    auto features = features_of(data, rows, device);  // fine-tuning: the encoder as it is now
    auto hyps = search(decoder, features, tokens, search_options);
    for (std::size_t i = begin; i < end; ++i) {
      const auto& img = data.val[i];
      references[img.id] = img.references;
      const auto& best = hyps[i - begin];
      candidates[img.id] = best.empty() ? std::string() : vocab.decode(best.front().tokens);
    }
  }
  if (was_training) decoder->train();
  auto scores = score_captions(references, candidates);
  if (captions_out) *captions_out = candidates;
  return scores.corpus;
}

// ---------------------------------------------------------------------------------------------
// The loop

LossTerms training_loss(Decoder& decoder, const at::Tensor& features, const at::Tensor& captions,
                        const at::Tensor& lengths, Precision precision, c10::Device device) {
  AutocastScope autocast(precision, device);  // the forward and the loss only, not the backward
  return decoder->loss(decoder->forward(features, captions, lengths));
}

TrainSummary train_decoder(Decoder& decoder, const TrainingData& data, const Vocabulary& vocab,
                           const TrainOptions& options, const fs::path& out_dir, const TrainHooks& hooks,
                           c10::Device device, bool quiet) {
  validate(options);
  const Precision precision = options.precision;
  check_precision(precision, device);  // before anything is written
  if (data.train.empty()) throw InputError("no training captions (is the dataset's train split empty?)");
  if (!data.gather && !data.encoder) throw InputError("no feature source");
  if (data.encoder && !data.images) throw InputError("fine-tuning: no image source");
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (!fs::is_directory(out_dir)) throw OutputError(out_dir.string() + ": cannot create the output folder");
  const fs::path checkpoint_path = out_dir / "checkpoint.pt";
  const auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };

  decoder->to(device);
  decoder->train();
  torch::optim::Adam optimizer(decoder->parameters(), torch::optim::AdamOptions(options.lr));
  // Fine-tuning: the encoder's trainable blocks get their own Adam (the rest stays frozen).
  std::unique_ptr<torch::optim::Adam> encoder_optimizer;
  std::vector<at::Tensor> encoder_params;
  if (data.encoder) {
    if (data.encoder->device() != device) data.encoder->to(device);  // before taking the parameters
    data.encoder->train(true);
    encoder_params = data.encoder->trainable_parameters();
    if (encoder_params.empty())
      throw UsageError("--fine-tune-encoder: the encoder " + data.encoder->identity() + " has no trainable parameters");
    encoder_optimizer = std::make_unique<torch::optim::Adam>(encoder_params, torch::optim::AdamOptions(options.encoder_lr));
  }
  Progress p;
  p.lr = options.lr;
  p.encoder_lr = options.encoder_lr;
  if (options.resume) {
    p = load_checkpoint(checkpoint_path, decoder, optimizer, encoder_optimizer.get(), data, options, device);
    set_lr(optimizer, p.lr);
    if (encoder_optimizer) set_lr(*encoder_optimizer, p.encoder_lr);
  } else {
    at::manual_seed(options.seed);  // dropout and hard-attention sampling
  }
  TrainingLog log(out_dir / "train_log.jsonl", options.resume ? p.step : -1);
  if (options.resume) log.write({{"kind", "resume"}, {"step", p.step}, {"epoch", p.epoch}});

  const int64_t N = static_cast<int64_t>(data.train.size());
  const int64_t steps_per_epoch = (N + options.batch_size - 1) / options.batch_size;
  int64_t total_steps = steps_per_epoch * options.epochs;
  if (options.max_steps > 0) total_steps = std::min<int64_t>(total_steps, options.max_steps);
  ProgressBar bar(total_steps, p.step, quiet, options.log_every);
  SignalGuard signals;
  auto params = decoder->parameters();
  // Mixed precision: autocast around the forward and the loss; float16 scales the loss.
  LossScaler scaler(precision == Precision::fp16);
  scaler.restore(p.loss_scale, p.loss_scale_good_steps);  // ignored when not set (0) or not fp16
  std::vector<at::Tensor> scaled_params = params;  // every parameter whose gradient the scale multiplies
  scaled_params.insert(scaled_params.end(), encoder_params.begin(), encoder_params.end());

  TrainSummary summary;
  auto fill_summary = [&] {
    summary.steps = p.step;
    summary.epochs_completed = p.epochs_completed;
    summary.best_bleu4 = p.best_bleu4;
    summary.best_epoch = p.best_epoch;
    summary.best_scores = p.best_scores;
    summary.final_lr = p.lr;
    summary.seconds = elapsed();
    summary.steps_per_second = bar.rate();
    summary.stopped_early = p.early_stopped;
  };
  int64_t last_checkpoint_step = options.resume ? p.step : -1;
  auto checkpoint = [&] {
    if (!all_finite(*decoder, data.encoder))
      throw TrainingStopped("step " + std::to_string(p.step) + ": the weights are no longer finite; the last good "
                            "checkpoint " + checkpoint_path.string() + " is kept (lower --lr)");
    save_checkpoint(checkpoint_path, decoder, optimizer, encoder_optimizer.get(), p, data, options, device);
    last_checkpoint_step = p.step;
    log.write({{"kind", "checkpoint"}, {"step", p.step}, {"epoch", p.epoch}, {"batch", p.batch}});
  };
  auto stop = [&](const std::string& why) {
    bar.finish();
    log.write({{"kind", "stopped"}, {"step", p.step}, {"reason", why}});
    std::string kept = last_checkpoint_step >= 0
                           ? "the last good checkpoint " + checkpoint_path.string() + " (step " +
                                 std::to_string(last_checkpoint_step) + ") is kept; continue with --resume"
                           : "no checkpoint was written yet";
    throw TrainingStopped(why + "; " + kept);
  };

  // Running sums of the loss parts between log records.
  double sum_total = 0, sum_nll = 0, sum_ds = 0, sum_rf = 0, sum_ent = 0;
  int64_t sum_count = 0;
  auto window_start = std::chrono::steady_clock::now();
  bool reached_max = false;

  while (p.epoch < options.epochs && !p.early_stopped) {
    auto order = epoch_order(data.train.size(), options.seed, p.epoch);
    // Fine-tuning: the next batch's images are decoded on a worker thread while this one trains
    // (destroyed before `order`; a load that is never used is waited for and dropped).
    std::future<ImageBatch> next_images;
    while (p.batch < steps_per_epoch) {
      if (options.max_steps > 0 && p.step >= options.max_steps) {
        reached_max = true;
        break;
      }
      if (g_stop_signal) {
        checkpoint();
        stop("interrupted by signal " + std::to_string(static_cast<int>(g_stop_signal)));
      }
      int64_t begin = p.batch * options.batch_size, end = std::min(N, begin + options.batch_size);
      Batch batch = make_batch(data, order, begin, end, options.max_train_length, device);
      if (data.encoder) {
        ImageBatch images = next_images.valid() ? next_images.get() : load_images(data, batch.rows);
        const int64_t next = p.batch + 1;
        if (next < steps_per_epoch && (options.max_steps == 0 || p.step + 1 < options.max_steps)) {
          std::vector<int64_t> rows;  // in make_batch's row order
          for (int64_t i : batch_captions(data, order, next * options.batch_size,
                                          std::min(N, (next + 1) * options.batch_size), options.max_train_length))
            rows.push_back(data.train[static_cast<std::size_t>(i)].feature_row);
          next_images = std::async(std::launch::async, [&data, rows = std::move(rows)] { return load_images(data, rows); });
        }
        AutocastScope autocast(precision, device);  // the encoder's forward too
        batch.features = features_of(data, batch.rows, device, &images);  // [B, n, D], with autograd
      }
      LossTerms terms = training_loss(decoder, batch.features, batch.captions, batch.lengths, precision, device);
      double total = terms.total.item<double>();
      if (!std::isfinite(total)) {
        stop("step " + std::to_string(p.step + 1) + " (epoch " + std::to_string(p.epoch + 1) + "): the loss is " +
             (std::isnan(total) ? "NaN" : "infinite") +
             ", training stopped (lower --lr, or check the features for non-finite values)");
      }
      clear_grads(optimizer);  // no zero-filled gradients to add into (satcap/ops/adam_step.h)
      if (encoder_optimizer) clear_grads(*encoder_optimizer);
      scaler.scaled(terms.total).backward();
      // fp16: gradients back to their true size; a step whose gradients overflowed is skipped (the
      // batch is used up all the same) and the scale halved.
      const bool finite = scaler.unscale_and_update(scaled_params);
      p.loss_scale = scaler.enabled() ? scaler.scale() : 0.0;
      p.loss_scale_good_steps = scaler.good_steps();
      if (finite) {
        if (options.grad_clip > 0) {  // the decoder's and the encoder's gradients are clipped separately
          double norm = torch::nn::utils::clip_grad_norm_(params, options.grad_clip);
          if (encoder_optimizer) norm += torch::nn::utils::clip_grad_norm_(encoder_params, options.grad_clip);
          if (!std::isfinite(norm))
            stop("step " + std::to_string(p.step + 1) + ": the gradient norm is not finite, training stopped "
                 "before the update (lower --lr)");
        }
        adam_step(optimizer);  // Adam::step's update in one pass per parameter (satcap/ops/adam_step.h)
        if (encoder_optimizer) adam_step(*encoder_optimizer);
      } else {
        ++p.skipped_steps;
      }
      ++p.batch;
      ++p.step;

      sum_total += total;
      sum_nll += scalar(terms.nll);
      sum_ds += scalar(terms.ds_reg);
      sum_rf += scalar(terms.reinforce);
      sum_ent += scalar(terms.entropy);
      ++sum_count;
      if (p.step % options.log_every == 0 || p.batch == steps_per_epoch) {
        double window = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
        double k = static_cast<double>(sum_count);
        nlohmann::json record = {{"kind", "train"},
                                 {"step", p.step},
                                 {"epoch", p.epoch + 1},
                                 {"loss", sum_total / k},
                                 {"nll", sum_nll / k},
                                 {"ds_reg", sum_ds / k},
                                 {"reinforce", sum_rf / k},
                                 {"entropy", sum_ent / k},
                                 {"lr", p.lr},
                                 {"steps_per_s", window > 0 ? k / window : 0.0},
                                 {"time_s", elapsed()}};
        if (decoder->options().attention == AttentionKind::hard) record["baseline"] = scalar(decoder->baseline());
        if (encoder_optimizer) record["encoder_lr"] = p.encoder_lr;
        if (scaler.enabled()) {
          record["loss_scale"] = scaler.scale();
          record["skipped_steps"] = p.skipped_steps;
        }
        log.write(record);
        char note[64];
        std::snprintf(note, sizeof note, "epoch %d, loss %.3f", p.epoch + 1, sum_total / k);
        bar.update(p.step, note);
        sum_total = sum_nll = sum_ds = sum_rf = sum_ent = 0;
        sum_count = 0;
        window_start = std::chrono::steady_clock::now();
      } else {
        bar.update(p.step);
      }
      if (options.checkpoint_every > 0 && p.step % options.checkpoint_every == 0 && p.batch < steps_per_epoch)
        checkpoint();
    }
    if (reached_max) break;

    // The epoch's end: validate, adjust the learning rate, maybe stop, checkpoint.
    p.epochs_completed = p.epoch + 1;
    if (!data.val.empty() && (p.epoch + 1) % options.val_every == 0) {
      auto t0 = std::chrono::steady_clock::now();
      std::map<std::string, std::string> captions;
      auto scores = validate_decoder(decoder, data, vocab, options, device, &captions);
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double bleu4 = scores.count("BLEU-4") ? scores["BLEU-4"] : 0.0;
      nlohmann::json record = {{"kind", "val"},
                               {"step", p.step},
                               {"epoch", p.epoch + 1},
                               {"bleu1", scores["BLEU-1"]},
                               {"bleu2", scores["BLEU-2"]},
                               {"bleu3", scores["BLEU-3"]},
                               {"bleu4", bleu4},
                               {"rouge_l", scores["ROUGE-L"]},
                               {"cider", scores["CIDEr"]},
                               {"lr", p.lr},
                               {"images", captions.size()},
                               {"seconds", seconds},
                               {"time_s", elapsed()}};
      if (!captions.empty()) record["example"] = {{"id", captions.begin()->first}, {"caption", captions.begin()->second}};
      bool improved = bleu4 > p.best_bleu4;
      record["best"] = improved;
      log.write(record);
      char line[200];
      std::snprintf(line, sizeof line, "epoch %d: val BLEU-4 %.4f BLEU-1 %.4f CIDEr %.3f%s", p.epoch + 1, bleu4,
                    scores["BLEU-1"], scores["CIDEr"], improved ? " (best)" : "");
      bar.message(line);
      if (improved) {
        p.best_bleu4 = bleu4;
        p.best_epoch = p.epoch + 1;
        p.best_scores = scores;
        p.since_best = 0;
        fill_summary();
        if (hooks.on_best) hooks.on_best(decoder, summary);
        decoder->train();
      } else {
        ++p.since_best;
        if (options.lr_decay_patience > 0 && p.since_best % options.lr_decay_patience == 0 && options.lr_decay < 1) {
          double new_lr = p.lr * options.lr_decay;
          log.write({{"kind", "lr_decay"}, {"step", p.step}, {"epoch", p.epoch + 1}, {"from", p.lr}, {"to", new_lr}});
          bar.message("learning rate " + std::to_string(p.lr) + " -> " + std::to_string(new_lr));
          p.lr = new_lr;
          set_lr(optimizer, p.lr);
          if (encoder_optimizer) {
            p.encoder_lr *= options.lr_decay;
            set_lr(*encoder_optimizer, p.encoder_lr);
          }
        }
        if (options.early_stop_patience > 0 && p.since_best >= options.early_stop_patience) {
          p.early_stopped = true;
          log.write({{"kind", "early_stop"}, {"step", p.step}, {"epoch", p.epoch + 1}});
          bar.message("early stop: no better BLEU-4 for " + std::to_string(p.since_best) + " validations");
        }
      }
      plot_training_curves(log.records(), out_dir / "curves.png");
    }
    ++p.epoch;
    p.batch = 0;
    checkpoint();
  }
  if (last_checkpoint_step != p.step) checkpoint();
  bar.finish();
  fill_summary();
  if (p.best_bleu4 < 0 && hooks.on_final) {
    decoder->eval();
    hooks.on_final(decoder, summary);
  }
  decoder->eval();
  log.write({{"kind", "done"},
             {"step", p.step},
             {"epochs_completed", p.epochs_completed},
             {"best_bleu4", p.best_bleu4},
             {"best_epoch", p.best_epoch},
             {"time_s", elapsed()}});
  plot_training_curves(log.records(), out_dir / "curves.png");
  return summary;
}

}  // namespace satcap
