#include "satcap/model/decoder_options.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
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
  // The parameters in float32, before anything is allocated: an allocation this size fails deep in
  // LibTorch (or the kernel kills the process when it is touched).
  const double bytes = 4 * parameter_count();
  const double memory = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGE_SIZE));
  if (memory > 0 && bytes > memory) {
    std::ostringstream s;
    s << std::setprecision(3) << "the decoder options (embed_dim " << embed_dim << ", attention_dim " << attention_dim << ", hidden_dim " << hidden_dim;
    if (with_data) s << ", vocab_size " << vocab_size << ", feature_dim " << feature_dim;
    s << ") make a decoder of " << parameter_count() << " parameters (" << bytes / (1 << 30)
      << " GiB), more than this machine's memory (" << memory / (1 << 30) << " GiB)";
    if (as_flags) s << "; choose smaller --hidden-dim, --embed-dim and --attention-dim";
    throw UsageError(s.str());
  }
}

double DecoderOptions::parameter_count() const {
  const double V = std::max(vocab_size, 1), D = std::max(feature_dim, 1), E = embed_dim, A = attention_dim, H = hidden_dim;
  double n = V * E;                                // embed
  n += D * A + A + H * A + A;                      // att_features, att_hidden, att_score
  if (beta != BetaKind::none) {
    const double out = beta == BetaKind::scalar ? 1 : D;
    n += H * out + out;                            // f_beta
  }
  n += 4 * H * (E + D) + 4 * H * H + 8 * H;        // lstm
  if (init_state != InitState::zeros) n += 2 * (D * H + H);  // init_h, init_c
  if (deep_output) n += H * E + E + D * E + E + E * V + V;   // out_hidden, out_context, out_vocab
  else n += H * V + V;                                       // out_vocab
  return n + 1;                                    // the REINFORCE baseline
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
