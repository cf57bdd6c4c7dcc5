#include "satcap/train/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <torch/optim/adam.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "satcap/model/encoder.h"
#include "satcap/model/named_tensors.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "satcap/runtime/json_value.h"
#include "satcap/runtime/torch_error.h"

namespace fs = std::filesystem;

namespace satcap {

nlohmann::json TrainingProgress::to_json() const {
  return {{"epoch", epoch},         {"batch", batch},
          {"step", step},           {"lr", lr}, {"encoder_lr", encoder_lr},
          {"best_bleu4", best_bleu4}, {"best_epoch", best_epoch},
          {"best_scores", best_scores}, {"since_best", since_best},
          {"early_stopped", early_stopped}, {"epochs_completed", epochs_completed},
          {"loss_scale", loss_scale}, {"loss_scale_good_steps", loss_scale_good_steps},
          {"skipped_steps", skipped_steps}};
}

TrainingProgress TrainingProgress::from_json(const nlohmann::json& j, const std::string& source_in) {
  const std::string source = source_in + ": progress record";
  constexpr ExitCode m = ExitCode::model;
  TrainingProgress p;
  p.epoch = json_field<int>(j, "epoch", source, m);
  p.batch = json_field<int64_t>(j, "batch", source, m);
  p.step = json_field<int64_t>(j, "step", source, m);
  p.lr = json_field<double>(j, "lr", source, m);
  p.encoder_lr = json_field_or<double>(j, "encoder_lr", 0.0, source, m);
  p.best_bleu4 = json_field<double>(j, "best_bleu4", source, m);
  p.best_epoch = json_field<int>(j, "best_epoch", source, m);
  const nlohmann::json scores = j.value("best_scores", nlohmann::json::object());
  if (!scores.is_object()) throw ModelError(source + ": \"best_scores\" must be an object");
  for (auto it = scores.begin(); it != scores.end(); ++it) p.best_scores[it.key()] = json_as<double>(it.value(), it.key(), source, m);
  p.since_best = json_field<int>(j, "since_best", source, m);
  p.early_stopped = json_field<bool>(j, "early_stopped", source, m);
  p.epochs_completed = json_field<int>(j, "epochs_completed", source, m);
  p.loss_scale = json_field_or<double>(j, "loss_scale", 0.0, source, m);  // absent before --precision
  p.loss_scale_good_steps = json_field_or<int64_t>(j, "loss_scale_good_steps", 0, source, m);
  p.skipped_steps = json_field_or<int64_t>(j, "skipped_steps", 0, source, m);
  if (p.epoch < 0 || p.batch < 0 || p.step < 0) throw ModelError(source + ": negative epoch, batch or step");
  return p;
}

void save_checkpoint(const fs::path& path, Decoder& decoder, TrainingStep& step, const TrainingProgress& p,
                     const TrainingData& data, const TrainOptions& options, c10::Device device) {
  const int format = std::max(decoder_options_format(decoder->options()), data.encoder ? 2 : 1);
  nlohmann::json meta = {{"format_version", format},
                         {"progress", p.to_json()},
                         {"decoder", decoder_options_json(decoder->options(), format)},
                         {"train_captions", data.train.size()},
                         {"batch_size", options.batch_size},
                         {"seed", options.seed},
                         {"options", to_json(options)}};  // what ran: --resume continues with them
  std::vector<std::pair<std::string, at::Tensor>> encoder_tensors;
  if (data.encoder) {
    encoder_tensors = data.encoder->named_trainable_parameters();
    meta["fine_tune"] = {{"encoder", data.encoder->identity()}, {"tensors", encoder_tensors.size()}};
  }
  torch::serialize::OutputArchive archive;
  archive.write("meta", c10::IValue(meta.dump()));
  write_named_tensors(archive, *decoder, "model.");
  torch::serialize::OutputArchive opt_archive;
  step.optimizer().save(opt_archive);
  archive.write("optimizer", opt_archive);
  if (data.encoder) {
    for (auto& [name, t] : encoder_tensors) archive.write("encoder." + name, t.detach().to(c10::kCPU));
    torch::serialize::OutputArchive encoder_opt_archive;
    step.encoder_optimizer()->save(encoder_opt_archive);
    archive.write("encoder_optimizer", encoder_opt_archive);
  }
  archive.write("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
  if (!device.is_cpu()) archive.write("rng.device", at::globalContext().defaultGenerator(device).get_state());
  write_archive_atomic(path, archive);
}


namespace {

// Where a checkpoint is read from: its file, or its bytes (sent by rank 0 in data-parallel
// training); `name` (the file's path) names it in messages.
struct CheckpointSource {
  std::string name;
  const fs::path* path = nullptr;
  const std::string* bytes = nullptr;

  void load(torch::serialize::InputArchive& archive, c10::optional<c10::Device> device = c10::nullopt) const {
    try {
      if (bytes) archive.load_from(bytes->data(), bytes->size(), device);
      else archive.load_from(path->string(), device);
    } catch (const std::exception& e) {
      throw ModelError(name + ": not a readable satcap checkpoint (truncated or corrupt: " + exception_text(e) + ")");
    }
  }
};

nlohmann::json read_meta(const CheckpointSource& source) {
  const std::string& name = source.name;
  if (source.path && !fs::exists(*source.path))
    throw UsageError("--resume: " + name + " does not exist (nothing to resume; drop --resume to start)");
  if (source.path) require_regular_file(*source.path, ExitCode::model);
  torch::serialize::InputArchive archive;
  source.load(archive);  // ModelError naming the file when it is not a readable archive
  c10::IValue meta_value;
  if (!archive.try_read("meta", meta_value) || !meta_value.isString())
    throw ModelError(name + ": not a satcap checkpoint (no meta record)");
  auto meta = nlohmann::json::parse(meta_value.toStringRef(), nullptr, false);
  if (meta.is_discarded() || !meta.is_object()) throw ModelError(name + ": malformed checkpoint meta record");
  const int v = json_field_or<int>(meta, "format_version", 0, name, ExitCode::model);
  if (v > kCheckpointFormatVersion)
    throw ModelError(name + ": this checkpoint was written by a newer satcap (format " + std::to_string(v) +
                     " > " + std::to_string(kCheckpointFormatVersion) + "); upgrade satcap");
  return meta;
}

TrainingProgress load(const CheckpointSource& source, Decoder& decoder, TrainingStep& step, const TrainingData& data,
                      const TrainOptions& options, c10::Device device) {
  const std::string& name = source.name;
  nlohmann::json meta = read_meta(source);
  const std::string& where = name;
  const bool tuned = meta.contains("fine_tune");
  const std::string tuned_encoder =
      tuned ? json_field_or<std::string>(meta["fine_tune"], "encoder", "", where + ": fine_tune", ExitCode::model) : "";
  const auto train_captions = json_field_or<std::uint64_t>(meta, "train_captions", 0, where, ExitCode::model);
  const auto batch_size = json_field_or<int>(meta, "batch_size", 0, where, ExitCode::model);
  const auto seed = json_field_or<std::uint64_t>(meta, "seed", 0, where, ExitCode::model);
  if (tuned != (data.encoder != nullptr))
    throw UsageError("--resume: " + name + " was written " + (tuned ? "with" : "without") +
                     " --fine-tune-encoder; resume with the same options");
  if (tuned && tuned_encoder != data.encoder->identity())
    throw UsageError("--resume: " + name + " fine-tuned encoder '" + tuned_encoder +
                     "', the encoder now is '" + data.encoder->identity() +
                     "'; resume with the same --encoder and --fine-tune-blocks");
  if (train_captions != data.train.size())
    throw UsageError("--resume: " + name + " was written for " +
                     std::to_string(train_captions) + " training captions, the data now has " +
                     std::to_string(data.train.size()) + "; resume with the same dataset and features");
  if (batch_size != options.batch_size)
    throw UsageError("--resume: " + name + " was written with batch size " +
                     std::to_string(batch_size) + "; resume with the same --batch (got " +
                     std::to_string(options.batch_size) + ")");
  if (seed != options.seed)
    throw UsageError("--resume: " + name + " was written with seed " + std::to_string(seed) +
                     "; resume with the same --seed");
  torch::serialize::InputArchive archive;
  source.load(archive, device);
  read_named_tensors(archive, *decoder, name, "model.");
  torch::serialize::InputArchive opt_archive;
  if (!archive.try_read("optimizer", opt_archive)) throw ModelError(name + ": optimizer state missing");
  step.optimizer().load(opt_archive);
  if (tuned) {
    at::NoGradGuard no_grad;
    for (auto& [tensor, target] : data.encoder->named_trainable_parameters()) {
      at::Tensor value;
      if (!archive.try_read("encoder." + tensor, value))
        throw ModelError(name + ": fine-tuned encoder tensor '" + tensor + "' is missing");
      if (value.sizes() != target.sizes())
        throw ModelError(name + ": fine-tuned encoder tensor '" + tensor + "' has wrong shape: got " +
                         shape_text(value.sizes()) + ", expected " + shape_text(target.sizes()));
      target.copy_(value);
    }
    torch::serialize::InputArchive encoder_opt_archive;
    if (!archive.try_read("encoder_optimizer", encoder_opt_archive))
      throw ModelError(name + ": the encoder's optimizer state is missing");
    step.encoder_optimizer()->load(encoder_opt_archive);
  }
  at::Tensor rng;
  if (!archive.try_read("rng.cpu", rng)) throw ModelError(name + ": random state missing");
  at::Generator cpu_generator = at::detail::getDefaultCPUGenerator();  // a handle on the global generator
  cpu_generator.set_state(rng.cpu());
  if (!device.is_cpu() && archive.try_read("rng.device", rng)) {
    at::Generator device_generator = at::globalContext().defaultGenerator(device);
    device_generator.set_state(rng.cpu());
  }
  if (!meta.contains("progress")) throw ModelError(name + ": malformed: the progress record is missing");
  return TrainingProgress::from_json(meta.at("progress"), name);
}

}  // namespace

nlohmann::json read_checkpoint_meta(const fs::path& path) { return read_meta({path.string(), &path, nullptr}); }

nlohmann::json read_checkpoint_meta_bytes(const std::string& bytes, const std::string& name) {
  return read_meta({name, nullptr, &bytes});
}

TrainingProgress load_checkpoint(const fs::path& path, Decoder& decoder, TrainingStep& step,
                                 const TrainingData& data, const TrainOptions& options, c10::Device device) {
  return load({path.string(), &path, nullptr}, decoder, step, data, options, device);
}

TrainingProgress load_checkpoint_bytes(const std::string& bytes, const std::string& name, Decoder& decoder,
                                       TrainingStep& step, const TrainingData& data, const TrainOptions& options,
                                       c10::Device device) {
  return load({name, nullptr, &bytes}, decoder, step, data, options, device);
}

std::string read_checkpoint_bytes(const fs::path& path) {
  if (!fs::exists(path))
    throw UsageError("--resume: " + path.string() + " does not exist (nothing to resume; drop --resume to start)");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (!in) throw InputError(path.string() + ": cannot read the checkpoint");
  return bytes.str();
}

}  // namespace satcap
