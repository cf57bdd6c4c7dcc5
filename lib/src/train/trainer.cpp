#include "satcap/train/trainer.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <limits>
#include <optional>

#include "satcap/decode/search.h"
#include "satcap/dist/communicator.h"
#include "satcap/eval/metrics.h"
#include "satcap/model/encoder.h"
#include "satcap/model/vocab.h"
#include "satcap/runtime/error.h"
#include "satcap/train/batches.h"
#include "satcap/train/checkpoint.h"
#include "satcap/train/schedule.h"
#include "satcap/train/step.h"
#include "satcap/train/training_log.h"

namespace fs = std::filesystem;

namespace satcap {

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

double scalar(const at::Tensor& t) { return t.defined() ? t.item<double>() : 0.0; }

// Whether to checkpoint and stop now: a signal here, or (data-parallel) on any process, so that
// they all stop at the same step.
bool stop_requested(Communicator* comm) {
  if (!comm) return g_stop_signal != 0;
  at::Tensor flag = at::full({1}, g_stop_signal != 0 ? 1.0f : 0.0f);
  comm->sum(flag);
  return flag.item<float>() > 0;
}

// What every replica of a data-parallel run must hold alike: the trained parameters (the
// decoder's, the tuned encoder's) and the decoder's buffers (the REINFORCE baseline).
std::vector<at::Tensor> replica_state(Decoder& decoder, TrainingStep& step) {
  std::vector<at::Tensor> state = step.parameters();
  for (const auto& b : decoder->buffers()) state.push_back(b);
  return state;
}

// Every rank's hash of its replica (FNV-1a over the bytes), checked to be rank 0's: a replica that
// drifted would be a bug, and is refused before it is checkpointed.
nlohmann::json check_replicas(Communicator& comm, Decoder& decoder, TrainingStep& step, int64_t at_step) {
  uint64_t h = 1469598103934665603ULL;
  for (const auto& t : replica_state(decoder, step)) {
    const at::Tensor c = t.detach().to(at::kCPU).contiguous();
    const auto* bytes = static_cast<const unsigned char*>(c.data_ptr());
    for (std::size_t i = 0, n = static_cast<std::size_t>(c.numel()) * c.element_size(); i < n; ++i)
      h = (h ^ bytes[i]) * 1099511628211ULL;
  }
  char mine[20];
  std::snprintf(mine, sizeof mine, "%016llx", static_cast<unsigned long long>(h));
  const std::vector<std::string> all = comm.all_gather_bytes(mine);
  for (std::size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0])
      throw Error(ExitCode::internal, "step " + std::to_string(at_step) + ": the weights of rank " + std::to_string(r) +
                                          " (hash " + all[r] + ") differ from rank 0's (" + all[0] +
                                          "): the replicas diverged (a bug; please report it)");
  return all;
}

bool all_finite(const std::vector<at::Tensor>& parameters) {
  for (const auto& p : parameters)
    if (!at::isfinite(p).all().item<bool>()) return false;
  return true;
}

// Validation images' features: gathered, or encoded by the encoder as it is now when fine-tuning.
at::Tensor validation_features(const TrainingData& data, const std::vector<int64_t>& rows, c10::Device device) {
  if (!data.encoder) return data.gather(rows).to(device, at::kFloat);  // [B, n, D]
  return data.encoder->forward(data.images(rows).to(device));          // [B, n, D]
}

// The loss parts summed between two train records of the log.
struct LossWindow {
  double total = 0, nll = 0, ds_reg = 0, reinforce = 0, entropy = 0, tokens = 0;
  int64_t steps = 0;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  void add(const TrainingStep::Result& r) {
    total += r.loss;
    nll += scalar(r.terms.nll);
    ds_reg += scalar(r.terms.ds_reg);
    reinforce += scalar(r.terms.reinforce);
    entropy += scalar(r.terms.entropy);
    tokens += scalar(r.terms.tokens);
    ++steps;
  }
  // The "train" log record of the window's means; starts a new window.
  nlohmann::json close(const TrainingProgress& p, double time_s) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const double k = static_cast<double>(steps);
    nlohmann::json record = {{"kind", "train"},
                             {"step", p.step},
                             {"epoch", p.epoch + 1},
                             {"loss", total / k},
                             {"nll", nll / k},
                             {"ds_reg", ds_reg / k},
                             {"reinforce", reinforce / k},
                             {"entropy", entropy / k},
                             {"lr", p.lr},
                             {"steps_per_s", seconds > 0 ? k / seconds : 0.0},
                             {"words_per_s", seconds > 0 ? tokens / seconds : 0.0},
                             {"time_s", time_s}};
    *this = LossWindow();
    return record;
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Validation: real decoding, scored like the official evaluation.

std::map<std::string, double> validate_decoder(Decoder& decoder, const TrainingData& data, const Vocabulary& vocab,
                                               const TrainOptions& options, c10::Device device,
                                               std::map<std::string, std::string>* captions_out, Communicator* comm) {
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
  // Data-parallel: chunk k is decoded by rank k mod size, so that each image is decoded with the
  // same neighbours as in one process (a batched search's numbers depend on them) and every rank
  // gets about the same share; the captions are gathered, rank 0 scores them, every rank gets its
  // scores (the schedule's decisions must be the same everywhere).
  const std::size_t ranks = comm ? static_cast<std::size_t>(comm->size()) : 1;
  const std::size_t rank = comm ? static_cast<std::size_t>(comm->rank()) : 0;
  for (std::size_t begin = 0, k = 0; begin < n; begin += chunk, ++k) {
    std::size_t end = std::min(n, begin + chunk);
    for (std::size_t i = begin; i < end; ++i) references[data.val[i].id] = data.val[i].references;
    if (k % ranks != rank) continue;
    std::vector<int64_t> rows;
    for (std::size_t i = begin; i < end; ++i) rows.push_back(data.val[i].feature_row);
    auto features = validation_features(data, rows, device);  // fine-tuning: the encoder as it is now
    auto hyps = search(decoder, features, tokens, search_options);
    for (std::size_t i = begin; i < end; ++i) {
      const auto& best = hyps[i - begin];
      candidates[data.val[i].id] = best.empty() ? std::string() : vocab.decode(best.front().tokens);
    }
  }
  if (was_training) decoder->train();
  if (comm) {
    for (const std::string& part : comm->all_gather_bytes(nlohmann::json(candidates).dump()))
      for (auto& [id, caption] : nlohmann::json::parse(part).get<std::map<std::string, std::string>>())
        candidates[id] = caption;
  }
  std::map<std::string, double> scores;
  if (!comm || comm->is_main()) scores = score_captions(references, candidates).corpus;
  if (comm) scores = nlohmann::json::parse(comm->broadcast_bytes(nlohmann::json(scores).dump())).get<std::map<std::string, double>>();
  if (captions_out) *captions_out = candidates;
  return scores;
}

// ---------------------------------------------------------------------------------------------
// The loop: a batch generator, a training step, a schedule and checkpoints.

TrainSummary train_decoder(Decoder& decoder, const TrainingData& data, const Vocabulary& vocab,
                           const TrainOptions& options, const fs::path& out_dir, const TrainHooks& hooks,
                           c10::Device device, bool quiet, Communicator* comm) {
  validate(options);
  check_precision(options.precision, device);  // before anything is written
  if (data.train.empty()) throw InputError("no training captions (is the dataset's train split empty?)");
  if (!data.gather && !data.encoder) throw InputError("no feature source");
  if (data.encoder && !data.images) throw InputError("fine-tuning: no image source");
  // Data-parallel training: every process runs this loop on its part of each batch; rank 0 alone
  // reads and writes the output folder (checkpoints, log, curves, bundles through the hooks).
  const bool main = !comm || comm->is_main();
  if (main) {
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (!fs::is_directory(out_dir)) throw OutputError(out_dir.string() + ": cannot create the output folder");
  }
  const fs::path checkpoint_path = out_dir / "checkpoint.pt";
  const auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };

  decoder->to(device);
  decoder->train();
  if (data.encoder) {
    if (data.encoder->device() != device) data.encoder->to(device);  // before the step takes its parameters
    data.encoder->train(true);
  }
  TrainingStep step(decoder, data.encoder, options, device);
  if (comm) step.set_data_parallel(*comm, static_cast<std::size_t>(comm->options().bucket_mb * 1024 * 1024));
  TrainingProgress p;
  p.lr = options.lr;
  p.encoder_lr = options.encoder_lr;
  if (options.resume && comm) {  // rank 0 reads the checkpoint, every rank loads its bytes
    const std::string bytes = comm->broadcast_bytes(main ? read_checkpoint_bytes(checkpoint_path) : std::string());
    p = load_checkpoint_bytes(bytes, checkpoint_path.string(), decoder, step, data, options, device);
  } else if (options.resume) {
    p = load_checkpoint(checkpoint_path, decoder, step, data, options, device);
  } else {
    at::manual_seed(options.seed);  // dropout and hard-attention sampling
  }
  if (options.resume) {
    step.set_learning_rates(p.lr, p.encoder_lr);
    // A run resumed with more patience than it stopped early with goes on.
    if (p.early_stopped && (options.early_stop_patience == 0 || p.since_best < options.early_stop_patience))
      p.early_stopped = false;
  }
  if (comm) {  // every replica starts from rank 0's weights
    std::vector<at::Tensor> state = replica_state(decoder, step);
    comm->broadcast(state);
  }
  step.scaler().restore(p.loss_scale, p.loss_scale_good_steps);  // ignored when not set (0) or not fp16
  std::optional<TrainingLog> log;
  if (main) log.emplace(out_dir / "train_log.jsonl", options.resume ? p.step : -1);
  auto write = [&](const nlohmann::json& record) {
    if (log) log->write(record);
  };
  const int processes = comm ? comm->size() : 1;
  if (options.resume) {
    nlohmann::json record = {{"kind", "resume"}, {"step", p.step}, {"epoch", p.epoch}};
    if (comm) record["processes"] = processes;
    write(record);
  }

  std::optional<BatchShard> shard;
  if (comm) shard = BatchShard{comm->rank(), comm->size(), row_cost_in_steps(decoder->options())};
  BatchGenerator batches(data, options.batch_size, options.max_train_length, options.seed, device, shard);
  const TrainingSchedule schedule(options, batches.batches_per_epoch());
  ProgressBar bar(schedule.total_steps(), p.step, quiet || !main, options.log_every);
  SignalGuard signals;

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
    summary.processes = processes;
  };
  int64_t last_checkpoint_step = options.resume ? p.step : -1;
  auto kept_checkpoint = [&] {
    return last_checkpoint_step >= 0 ? "the last good checkpoint " + checkpoint_path.string() + " (step " +
                                           std::to_string(last_checkpoint_step) + ") is kept; continue with --resume"
                                     : std::string("no checkpoint was written yet");
  };
  auto note_checkpoint = [&] {  // what a process says when the run stops because another one failed
    if (comm) comm->set_failure_note(kept_checkpoint() + (last_checkpoint_step >= 0 ? " (with any number of processes)" : ""));
  };
  note_checkpoint();
  // Stops every process: they all get here at the same step (what stops them is summed over them),
  // and wait for rank 0 to have written its last record before they exit.
  auto stop_all = [&](const std::string& why) {
    bar.finish();
    if (comm) {
      comm->barrier();
      comm->leave();
    }
    throw TrainingStopped(why);
  };
  auto checkpoint = [&] {
    if (!all_finite(step.parameters()))
      stop_all("step " + std::to_string(p.step) + ": the weights are no longer finite; the last good checkpoint " +
               checkpoint_path.string() + " is kept (lower --lr)");
    nlohmann::json record = {{"kind", "checkpoint"}, {"step", p.step}, {"epoch", p.epoch}, {"batch", p.batch}};
    if (comm) record["replica_hashes"] = check_replicas(*comm, decoder, step, p.step);
    if (main) save_checkpoint(checkpoint_path, decoder, step, p, data, options, device);
    last_checkpoint_step = p.step;
    note_checkpoint();
    write(record);
  };
  auto stop = [&](const std::string& why) {
    write({{"kind", "stopped"}, {"step", p.step}, {"reason", why}});
    stop_all(why + "; " + kept_checkpoint());
  };

  LossWindow window;
  bool reached_max = false;
  while (!schedule.training_finished(p)) {
    while (!schedule.epoch_finished(p)) {
      if (!schedule.step_allowed(p)) {
        reached_max = true;
        break;
      }
      if (stop_requested(comm)) {
        checkpoint();
        stop(g_stop_signal ? "interrupted by signal " + std::to_string(static_cast<int>(g_stop_signal))
                           : std::string("interrupted: another process of the run got a signal"));
      }
      TrainingBatch batch = batches.batch(p.epoch, p.batch, schedule.next_step_allowed(p));
      const TrainingStep::Result r = step.run(batch);
      if (r.outcome == TrainingStep::Outcome::loss_not_finite)
        stop("step " + std::to_string(p.step + 1) + " (epoch " + std::to_string(p.epoch + 1) + "): the loss is " +
             (std::isnan(r.loss) ? "NaN" : "infinite") +
             ", training stopped (lower --lr, or check the features for non-finite values)");
      if (r.outcome == TrainingStep::Outcome::gradient_not_finite)
        stop("step " + std::to_string(p.step + 1) + ": the gradient norm is not finite, training stopped "
             "before the update (lower --lr)");
      if (r.outcome == TrainingStep::Outcome::skipped) ++p.skipped_steps;
      p.loss_scale = step.scaler().enabled() ? step.scaler().scale() : 0.0;
      p.loss_scale_good_steps = step.scaler().good_steps();
      ++p.batch;
      ++p.step;

      window.add(r);
      if (schedule.log_due(p)) {
        const double mean_loss = window.total / static_cast<double>(window.steps);
        nlohmann::json record = window.close(p, elapsed());
        if (decoder->options().attention == AttentionKind::hard) record["baseline"] = scalar(decoder->baseline());
        if (step.encoder_optimizer()) record["encoder_lr"] = p.encoder_lr;
        if (step.scaler().enabled()) {
          record["loss_scale"] = step.scaler().scale();
          record["skipped_steps"] = p.skipped_steps;
        }
        write(record);
        char note[64];
        std::snprintf(note, sizeof note, "epoch %d, loss %.3f", p.epoch + 1, mean_loss);
        bar.update(p.step, note);
      } else {
        bar.update(p.step);
      }
      if (schedule.checkpoint_due(p)) checkpoint();
    }
    if (reached_max) break;

    // The epoch's end: validate, adjust the learning rate, maybe stop, checkpoint.
    p.epochs_completed = p.epoch + 1;
    if (!data.val.empty() && schedule.validation_due(p)) {
      auto t0 = std::chrono::steady_clock::now();
      std::map<std::string, std::string> captions;
      auto scores = validate_decoder(decoder, data, vocab, options, device, &captions, comm);
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const TrainingSchedule::Verdict verdict = schedule.after_validation(p, scores, data.encoder != nullptr);
      const double bleu4 = scores.count("BLEU-4") ? scores["BLEU-4"] : 0.0;
      nlohmann::json record = {{"kind", "val"},
                               {"step", p.step},
                               {"epoch", p.epoch + 1},
                               {"bleu1", scores["BLEU-1"]},
                               {"bleu2", scores["BLEU-2"]},
                               {"bleu3", scores["BLEU-3"]},
                               {"bleu4", bleu4},
                               {"rouge_l", scores["ROUGE-L"]},
                               {"cider", scores["CIDEr"]},
                               {"lr", verdict.lr_decayed ? verdict.lr_before : p.lr},
                               {"images", captions.size()},
                               {"seconds", seconds},
                               {"time_s", elapsed()}};
      if (!captions.empty()) record["example"] = {{"id", captions.begin()->first}, {"caption", captions.begin()->second}};
      record["best"] = verdict.improved;
      write(record);
      char line[200];
      std::snprintf(line, sizeof line, "epoch %d: val BLEU-4 %.4f BLEU-1 %.4f CIDEr %.3f%s", p.epoch + 1, bleu4,
                    scores["BLEU-1"], scores["CIDEr"], verdict.improved ? " (best)" : "");
      bar.message(line);
      if (verdict.improved) {
        fill_summary();
        if (hooks.on_best && main) hooks.on_best(decoder, summary);
        decoder->train();
      }
      if (verdict.lr_decayed) {
        write({{"kind", "lr_decay"}, {"step", p.step}, {"epoch", p.epoch + 1}, {"from", verdict.lr_before}, {"to", p.lr}});
        bar.message("learning rate " + std::to_string(verdict.lr_before) + " -> " + std::to_string(p.lr));
        step.set_learning_rates(p.lr, p.encoder_lr);
      }
      if (verdict.early_stop) {
        write({{"kind", "early_stop"}, {"step", p.step}, {"epoch", p.epoch + 1}});
        bar.message("early stop: no better BLEU-4 for " + std::to_string(p.since_best) + " validations");
      }
      if (main) plot_training_curves(log->records(), out_dir / "curves.png");
    }
    ++p.epoch;
    p.batch = 0;
    checkpoint();
  }
  if (last_checkpoint_step != p.step) checkpoint();
  if (comm) comm->leave();  // no more collectives: the others may finish before this process
  bar.finish();
  fill_summary();
  if (p.best_bleu4 < 0 && hooks.on_final && main) {
    decoder->eval();
    hooks.on_final(decoder, summary);
  }
  decoder->eval();
  nlohmann::json done = {{"kind", "done"},
                         {"step", p.step},
                         {"epochs_completed", p.epochs_completed},
                         {"best_bleu4", p.best_bleu4},
                         {"best_epoch", p.best_epoch},
                         {"time_s", elapsed()}};
  if (comm) done["processes"] = processes;
  write(done);
  if (main) plot_training_curves(log->records(), out_dir / "curves.png");
  return summary;
}

}  // namespace satcap
