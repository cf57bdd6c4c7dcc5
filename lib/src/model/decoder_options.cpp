#include "satcap/model/decoder_options.h"

#include <cmath>
#include <sstream>

#include "satcap/runtime/error.h"

namespace satcap {

void DecoderOptions::validate(bool with_data, bool as_flags) const {
  auto fail = [&](const char* key, const std::string& rule, double got) {
    std::ostringstream s;
    s << (as_flags ? flag_of<DecoderOptions>(key) : std::string("decoder option ") + key) << " must " << rule << " (got "
      << got << ")";
    throw UsageError(s.str());
  };
  if (with_data) {
    if (vocab_size < 2) fail("vocab_size", "be at least 2", vocab_size);
    if (feature_dim < 1) fail("feature_dim", "be at least 1", feature_dim);
    if (regions < 0) fail("regions", "be 0 (any) or positive", regions);
  }
  if (embed_dim < 1) fail("embed_dim", "be at least 1", embed_dim);
  if (attention_dim < 1) fail("attention_dim", "be at least 1", attention_dim);
  if (hidden_dim < 1) fail("hidden_dim", "be at least 1", hidden_dim);
  if (!(dropout >= 0 && dropout < 1)) fail("dropout", "be in [0, 1)", dropout);
  auto nonneg = [&](const char* key, double v) {
    if (!(v >= 0 && std::isfinite(v))) fail(key, "be a finite number >= 0", v);
  };
  nonneg("alpha_c", alpha_c);
  nonneg("lambda_r", lambda_r);
  nonneg("lambda_e", lambda_e);
  if (!(baseline_decay >= 0 && baseline_decay <= 1)) fail("baseline_decay", "be in [0, 1]", baseline_decay);
  if (!(semi_sampling_p >= 0 && semi_sampling_p <= 1)) fail("semi_sampling_p", "be in [0, 1]", semi_sampling_p);
}

void to_json(nlohmann::json& j, const DecoderOptions& o) { j = options_to_json(o); }

void from_json(const nlohmann::json& j, DecoderOptions& o) {
  if (!j.is_object()) throw ModelError("decoder options: expected a JSON object");
  nlohmann::json current = j;
  // The names of bundles and checkpoints before format 3.
  if (auto it = current.find("init_mlp"); it != current.end() && !current.contains("init_state")) {
    if (!it->is_boolean()) throw ModelError("decoder options: \"init_mlp\" must be true or false (got " + it->dump() + ")");
    current["init_state"] = it->get<bool>() ? "tanh" : "zeros";
    current.erase("init_mlp");
  }
  if (auto it = current.find("doubly_stochastic_lambda"); it != current.end() && !current.contains("alpha_c")) {
    current["alpha_c"] = *it;
    current.erase("doubly_stochastic_lambda");
  }
  DecoderOptions r;
  options_from_json(current, r, "decoder options", ExitCode::model, MissingFields::refuse);
  try {
    r.validate();
  } catch (const UsageError& e) {
    throw ModelError(std::string("decoder options: ") + e.what());
  }
  o = r;
}

int decoder_options_format(const DecoderOptions& o) { return o.init_state == InitState::linear ? 3 : 1; }

nlohmann::json decoder_options_json(const DecoderOptions& o, int format) {
  nlohmann::json j = o;
  if (format >= 3) return j;
  j["doubly_stochastic_lambda"] = j.at("alpha_c");
  j.erase("alpha_c");
  j["init_mlp"] = o.init_state == InitState::tanh;
  j.erase("init_state");
  return j;
}

}  // namespace satcap
