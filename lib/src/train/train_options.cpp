// TrainOptions: validation, JSON, and the precedence defaults < config file < command line.
#include "satcap/train/train_options.h"

#include <cmath>
#include <sstream>

#include "satcap/runtime/error.h"

namespace satcap {

namespace {

std::string str(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

void require(bool ok, const std::string& message) {
  if (!ok) throw UsageError(message);
}

// Configs written before the decoder and the validation search were nested kept these flat.
nlohmann::json nest_legacy_keys(const nlohmann::json& j) {
  if (!j.is_object()) return j;
  static const std::pair<const char*, const char*> legacy[] = {
      {"attention", "/decoder/attention"},         {"embed_dim", "/decoder/embed_dim"},
      {"attention_dim", "/decoder/attention_dim"}, {"hidden_dim", "/decoder/hidden_dim"},
      {"dropout", "/decoder/dropout"},             {"alpha_c", "/decoder/alpha_c"},
      {"val_beam_size", "/validation/beam_size"},  {"max_caption_length", "/validation/max_length"}};
  nlohmann::json out = j;
  for (const auto& [key, path] : legacy) {
    auto it = out.find(key);
    if (it == out.end()) continue;
    const nlohmann::json::json_pointer pointer(path);
    if (!out.contains(pointer.parent_pointer()) || out[pointer.parent_pointer()].is_object()) out[pointer] = *it;
    out.erase(key);
  }
  return out;
}

}  // namespace

void validate(const TrainOptions& o) {
  auto flag = [](const char* key) { return flag_of<TrainOptions>(key); };
  auto at_least = [&](const char* key, int64_t v, int64_t min, const char* zero_means = nullptr) {
    if (v >= min) return;
    throw UsageError(flag(key) + " must be " + (zero_means ? std::string("0 (") + zero_means + ") or positive" :
                                                           "at least " + std::to_string(min)) +
                     " (got " + std::to_string(v) + ")");
  };
  at_least("epochs", o.epochs, 1);
  at_least("batch_size", o.batch_size, 1);
  require(std::isfinite(o.lr) && o.lr > 0, "--lr must be a positive number (got " + str(o.lr) + ")");
  require(std::isfinite(o.grad_clip) && o.grad_clip >= 0,
          "--grad-clip must be 0 (no clipping) or positive (got " + str(o.grad_clip) + ")");
  require(std::isfinite(o.lr_decay) && o.lr_decay > 0 && o.lr_decay <= 1,
          "--lr-decay must be in (0, 1] (got " + str(o.lr_decay) + ")");
  at_least("lr_decay_patience", o.lr_decay_patience, 0, "never");
  at_least("early_stop_patience", o.early_stop_patience, 0, "never");
  o.decoder.validate(/*with_data=*/false, /*as_flags=*/true);
  at_least("checkpoint_every", o.checkpoint_every, 0, "epoch ends only");
  at_least("log_every", o.log_every, 1);
  at_least("val_every", o.val_every, 1);
  o.validation.validate("--val-");
  at_least("val_max_images", o.val_max_images, 0, "all");
  at_least("max_train_length", o.max_train_length, 0, "no limit");
  at_least("max_steps", o.max_steps, 0, "no limit");
  at_least("fine_tune_blocks", o.fine_tune_blocks, 1);
  require(std::isfinite(o.encoder_lr) && o.encoder_lr > 0,
          "--encoder-lr must be a positive number (got " + str(o.encoder_lr) + ")");
}

nlohmann::json to_json(const TrainOptions& o) { return options_to_json(o, /*with_data=*/false); }

TrainOptions train_options_from_json(const nlohmann::json& j, const TrainOptions& base, const std::string& source) {
  nlohmann::json options = nest_legacy_keys(j);
  // config.effective.json's record of what a run ran on: informative, not an option.
  if (options.is_object() && options.contains("run") && options["run"].is_object()) options.erase("run");
  TrainOptions o = base;
  options_from_json(options, o, source, ExitCode::usage, MissingFields::keep, /*allow_data=*/false);
  return o;
}

namespace {

// The flag of the option at `path` ({"validation", "beam_size"} -> "--val-beam").
template <typename S>
std::string flag_of_path(const std::vector<std::string>& path, std::size_t at, const std::string& prefix) {
  std::string flag;
  for_each_field<S>([&](const auto& field) {
    if (path[at] != field.key) return;
    using T = typename std::decay_t<decltype(field)>::Type;
    if constexpr (has_option_fields<T>::value) {
      if (at + 1 < path.size()) flag = flag_of_path<T>(path, at + 1, field.flag != nullptr ? field.flag : prefix);
    } else {
      flag = prefix + option_flag(field.key, field.flag).substr(2);
    }
  });
  return flag.empty() ? path.back() : flag;
}

// Options a run may change when it is resumed: the schedule's length and cadence, validation, and
// how the learning rate reacts to it. The others fix the data order, the model and the optimiser.
bool may_change_on_resume(const std::string& top_key) {
  static const char* keys[] = {"epochs",         "max_steps",          "log_every",          "checkpoint_every",
                               "val_every",      "val_max_images",     "validation",         "lr_decay",
                               "lr_decay_patience", "early_stop_patience", "grad_clip"};
  for (const char* k : keys)
    if (top_key == k) return true;
  return false;
}

// Each leaf of `j` with its path.
void leaves(const nlohmann::json& j, std::vector<std::string>& path,
            std::vector<std::pair<std::vector<std::string>, nlohmann::json>>& out) {
  if (!j.is_object()) {
    out.emplace_back(path, j);
    return;
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    path.push_back(it.key());
    leaves(it.value(), path, out);
    path.pop_back();
  }
}

nlohmann::json::json_pointer pointer_of(const std::vector<std::string>& path) {
  nlohmann::json::json_pointer p;
  for (const auto& k : path) p /= k;
  return p;
}

}  // namespace

ResumedOptions resume_options(const nlohmann::json& recorded_json, const TrainOptions& now, const nlohmann::json& given,
                              const std::string& checkpoint) {
  TrainOptions recorded;
  try {
    recorded = train_options_from_json(recorded_json, TrainOptions{}, checkpoint + " (its options)");
  } catch (const UsageError& e) {
    throw ModelError(e.what());
  }
  recorded.resume = true;
  const nlohmann::json rec = to_json(recorded), cur = to_json(now);
  const nlohmann::json typed = given.is_null() ? cur : nest_legacy_keys(given);
  nlohmann::json result = rec;
  std::vector<std::pair<std::vector<std::string>, nlohmann::json>> all;
  std::vector<std::string> path;
  leaves(cur, path, all);
  ResumedOptions out;
  std::vector<std::string> refused;
  for (const auto& [keys, value] : all) {
    const auto pointer = pointer_of(keys);
    if (keys.front() == "resume" || !typed.contains(pointer) || !rec.contains(pointer) || rec[pointer] == value) continue;
    const std::string flag = flag_of_path<TrainOptions>(keys, 0, "--");
    const std::string change = flag + " " + value.dump() + " (the run has " + rec[pointer].dump() + ")";
    if (may_change_on_resume(keys.front())) {
      result[pointer] = value;
      out.applied.push_back(change);
    } else {
      refused.push_back(change);
    }
  }
  if (!refused.empty()) {
    std::string list;
    for (const auto& r : refused) list += (list.empty() ? "" : ", ") + r;
    throw UsageError("--resume: " + checkpoint + " continues a run started with other options: " + list +
                     "; these cannot change in the middle of a run (they fix its data order, model or optimiser): "
                     "resume with the run's values, or start a new run (another --out, or --overwrite)");
  }
  out.options = train_options_from_json(result, TrainOptions{}, checkpoint);
  out.options.resume = true;
  return out;
}

TrainOptions resolve_train_options(const nlohmann::json* config, const nlohmann::json& command_line,
                                   const std::string& config_source) {
  TrainOptions effective;  // defaults
  if (config) effective = train_options_from_json(*config, effective, config_source);
  return train_options_from_json(command_line, effective, "command line");
}

}  // namespace satcap
