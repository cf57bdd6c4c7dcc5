// TrainOptions: validation, JSON, and the precedence defaults < config file < command line.
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <sstream>
#include <type_traits>

#include "satcap/runtime/error.h"
#include "satcap/runtime/precision.h"
#include "satcap/train/trainer.h"

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

}  // namespace

void validate(const TrainOptions& o) {
  require(o.epochs >= 1, "--epochs must be at least 1 (got " + std::to_string(o.epochs) + ")");
  require(o.batch_size >= 1, "--batch must be at least 1 (got " + std::to_string(o.batch_size) + ")");
  require(std::isfinite(o.lr) && o.lr > 0, "--lr must be a positive number (got " + str(o.lr) + ")");
  require(std::isfinite(o.grad_clip) && o.grad_clip >= 0,
          "--grad-clip must be 0 (no clipping) or positive (got " + str(o.grad_clip) + ")");
  require(std::isfinite(o.lr_decay) && o.lr_decay > 0 && o.lr_decay <= 1,
          "--lr-decay must be in (0, 1] (got " + str(o.lr_decay) + ")");
  require(o.lr_decay_patience >= 0, "--lr-decay-patience must be 0 (never) or positive (got " +
                                        std::to_string(o.lr_decay_patience) + ")");
  require(o.early_stop_patience >= 0, "--early-stop-patience must be 0 (never) or positive (got " +
                                          std::to_string(o.early_stop_patience) + ")");
  require(o.attention == "soft" || o.attention == "hard",
          "--attention must be soft or hard (got '" + o.attention + "')");
  require(o.embed_dim >= 1, "--embed-dim must be at least 1 (got " + std::to_string(o.embed_dim) + ")");
  require(o.attention_dim >= 1, "--attention-dim must be at least 1 (got " + std::to_string(o.attention_dim) + ")");
  require(o.hidden_dim >= 1, "--hidden-dim must be at least 1 (got " + std::to_string(o.hidden_dim) + ")");
  require(std::isfinite(o.dropout) && o.dropout >= 0 && o.dropout < 1,
          "--dropout must be in [0, 1) (got " + str(o.dropout) + ")");
  require(std::isfinite(o.alpha_c) && o.alpha_c >= 0, "--alpha-c must be 0 or positive (got " + str(o.alpha_c) + ")");
  require(o.checkpoint_every >= 0, "--checkpoint-every must be 0 (epoch ends only) or positive (got " +
                                       std::to_string(o.checkpoint_every) + ")");
  require(o.log_every >= 1, "--log-every must be at least 1 (got " + std::to_string(o.log_every) + ")");
  require(o.val_every >= 1, "--val-every must be at least 1 (got " + std::to_string(o.val_every) + ")");
  require(o.val_beam_size >= 1, "--val-beam-size must be at least 1 (got " + std::to_string(o.val_beam_size) + ")");
  require(o.val_max_images >= 0,
          "--val-max-images must be 0 (all) or positive (got " + std::to_string(o.val_max_images) + ")");
  require(o.max_caption_length >= 1,
          "--max-caption-length must be at least 1 (got " + std::to_string(o.max_caption_length) + ")");
  require(o.max_train_length >= 0,
          "--max-train-length must be 0 (no limit) or positive (got " + std::to_string(o.max_train_length) + ")");
  require(o.fine_tune_blocks >= 1,
          "--fine-tune-blocks must be at least 1 (got " + std::to_string(o.fine_tune_blocks) + ")");
  require(std::isfinite(o.encoder_lr) && o.encoder_lr > 0,
          "--encoder-lr must be a positive number (got " + str(o.encoder_lr) + ")");
  parse_precision(o.precision);  // throws UsageError naming --precision
  require(o.max_steps >= 0, "--max-steps must be 0 (no limit) or positive (got " + std::to_string(o.max_steps) + ")");
}

// The one list of fields: name, and how to move it to and from JSON.
#define SATCAP_TRAIN_OPTION_FIELDS(X) \
  X(epochs)                           \
  X(batch_size)                       \
  X(lr)                               \
  X(grad_clip)                        \
  X(lr_decay)                         \
  X(lr_decay_patience)                \
  X(early_stop_patience)              \
  X(attention)                        \
  X(embed_dim)                        \
  X(attention_dim)                    \
  X(hidden_dim)                       \
  X(dropout)                          \
  X(alpha_c)                          \
  X(checkpoint_every)                 \
  X(log_every)                        \
  X(val_every)                        \
  X(val_beam_size)                    \
  X(val_max_images)                   \
  X(max_caption_length)               \
  X(max_train_length)                 \
  X(max_steps)                        \
  X(seed)                             \
  X(resume)                           \
  X(fine_tune_encoder)                \
  X(fine_tune_blocks)                 \
  X(encoder_lr)                       \
  X(precision)

nlohmann::json to_json(const TrainOptions& o) {
  nlohmann::json j = nlohmann::json::object();
#define SATCAP_TO_JSON(name) j[#name] = o.name;
  SATCAP_TRAIN_OPTION_FIELDS(SATCAP_TO_JSON)
#undef SATCAP_TO_JSON
  return j;
}

namespace {

template <typename T>
void read_field(const nlohmann::json& value, T& field, const std::string& key, const std::string& source) {
  bool ok = false;
  if constexpr (std::is_same_v<T, bool>) {
    ok = value.is_boolean();
  } else if constexpr (std::is_same_v<T, std::string>) {
    ok = value.is_string();
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = value.is_number();
  } else if constexpr (std::is_unsigned_v<T>) {
    ok = value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0);
  } else {
    ok = value.is_number_integer() &&
         value.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
         value.get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max());
  }
  if (!ok) {
    const char* expected = std::is_same_v<T, bool>          ? "true or false"
                           : std::is_same_v<T, std::string> ? "a string"
                           : std::is_floating_point_v<T>    ? "a number"
                           : std::is_unsigned_v<T>          ? "a non-negative integer"
                                                            : "an integer";
    throw UsageError(source + ": \"" + key + "\" must be " + expected + " (got " + value.dump() + ")");
  }
  field = value.get<T>();
}

}  // namespace

TrainOptions train_options_from_json(const nlohmann::json& j, const TrainOptions& base, const std::string& source) {
  if (!j.is_object()) throw UsageError(source + ": expected a JSON object of training options");
  TrainOptions o = base;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    bool known = false;
#define SATCAP_FROM_JSON(name)                  \
  if (key == #name) {                           \
    read_field(it.value(), o.name, key, source); \
    known = true;                               \
  }
    SATCAP_TRAIN_OPTION_FIELDS(SATCAP_FROM_JSON)
#undef SATCAP_FROM_JSON
    if (!known) {
      std::string names;
      const nlohmann::json defaults = to_json(TrainOptions{});
      for (auto it2 = defaults.begin(); it2 != defaults.end(); ++it2) names += (names.empty() ? "" : ", ") + it2.key();
      throw UsageError(source + ": unknown training option \"" + key + "\" (known: " + names + ")");
    }
  }
  return o;
}

TrainOptions resolve_train_options(const nlohmann::json* config, const TrainOptions& command_line,
                                   const std::set<std::string>& given, const std::string& config_source) {
  TrainOptions effective;  // defaults
  if (config) effective = train_options_from_json(*config, effective, config_source);
  nlohmann::json cli = to_json(command_line);
  nlohmann::json overrides = nlohmann::json::object();
  for (auto& key : given) {
    auto it = cli.find(key);
    if (it != cli.end()) overrides[key] = *it;
  }
  return train_options_from_json(overrides, effective, "command line");
}

}  // namespace satcap
