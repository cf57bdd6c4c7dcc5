// The decoder's shape and training regularisation: what a model bundle records of its decoder
// (config.json "decoder") and what `satcap train` sets from a config file or the command line
// (TrainOptions::decoder). One field table (satcap/runtime/option_table.h) gives the JSON keys,
// the flags and the help texts. No torch here.
#pragma once

#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "satcap/runtime/option_table.h"

namespace satcap {

// Soft: z_t = sum_i alpha_ti a_i (section 4.2). Hard: z_t = a_{s_t}, s_t ~ Multinomial(alpha_t),
// trained with REINFORCE (section 4.1).
enum class AttentionKind { soft, hard };
// The gate on the context: z_t = beta_t * context. scalar (the paper): beta_t = sigmoid(f_beta(h_{t-1}))
// in [B, 1]; vector: one gate per feature, [B, D] (a common reimplementation); none: beta_t = 1.
// The gate applies to hard attention's a_{s_t} too, as in the original code (its selector multiplies
// whatever context the step formed, sampled or expected); z_t feeds both the LSTM and the deep output.
enum class BetaKind { scalar, vector, none };
// f_att's nonlinearity: e_ti = w^T act(W_a a_i + U_a h_{t-1} + b). tanh (the original code) or relu.
enum class AttentionActivation { tanh, relu };
// The initial state from the mean annotation vector (section 3.1.2):
// tanh: h_0 = tanh(f_init,h(mean_i a_i)), c_0 = tanh(f_init,c(mean_i a_i)) (the original code);
// linear: the same maps without tanh (the most used PyTorch tutorial); zeros: h_0 = c_0 = 0.
enum class InitState { tanh, linear, zeros };
// How a hard-attention decoder forms z_t outside training (ignored by soft attention):
// expected = the soft context sum_i alpha_ti a_i (the original code's default at test time),
// sample = a_{s_t} with s_t ~ alpha_t, argmax = a_{argmax_i alpha_ti}.
enum class HardDecode { expected, sample, argmax };

template <>
struct EnumNames<AttentionKind> {
  static const std::vector<std::pair<std::string, AttentionKind>>& table() {
    static const std::vector<std::pair<std::string, AttentionKind>> t{{"soft", AttentionKind::soft},
                                                                      {"hard", AttentionKind::hard}};
    return t;
  }
};
template <>
struct EnumNames<BetaKind> {
  static const std::vector<std::pair<std::string, BetaKind>>& table() {
    static const std::vector<std::pair<std::string, BetaKind>> t{
        {"scalar", BetaKind::scalar}, {"vector", BetaKind::vector}, {"none", BetaKind::none}};
    return t;
  }
};
template <>
struct EnumNames<AttentionActivation> {
  static const std::vector<std::pair<std::string, AttentionActivation>>& table() {
    static const std::vector<std::pair<std::string, AttentionActivation>> t{{"tanh", AttentionActivation::tanh},
                                                                            {"relu", AttentionActivation::relu}};
    return t;
  }
};
template <>
struct EnumNames<InitState> {
  static const std::vector<std::pair<std::string, InitState>>& table() {
    static const std::vector<std::pair<std::string, InitState>> t{
        {"tanh", InitState::tanh}, {"linear", InitState::linear}, {"zeros", InitState::zeros}};
    return t;
  }
};
template <>
struct EnumNames<HardDecode> {
  static const std::vector<std::pair<std::string, HardDecode>>& table() {
    static const std::vector<std::pair<std::string, HardDecode>> t{
        {"expected", HardDecode::expected}, {"sample", HardDecode::sample}, {"argmax", HardDecode::argmax}};
    return t;
  }
};

struct DecoderOptions {
  // Vocabulary size V, special tokens included (from the vocabulary).
  int vocab_size = 0;
  // Feature dimension D of the annotation vectors a_i (from the encoder: its dim()).
  int feature_dim = 0;
  // Number of regions n; 0 = any (checked against the features when set).
  int regions = 0;
  // Word embedding size m (E is [V, m]).
  int embed_dim = 512;
  // Attention MLP width A (W_a: D -> A, U_a: H -> A, w: A -> 1).
  int attention_dim = 512;
  // LSTM width H. 512 as the most used PyTorch reimplementation: half the cost of 1024 on a CPU;
  // the original Theano code used a wider LSTM.
  int hidden_dim = 512;
  // Dropout probability on h_t and on the deep-output sum before L_o (the original code: 0.5).
  double dropout = 0.5;
  // Soft or hard attention.
  AttentionKind attention = AttentionKind::soft;
  // Gating of the context (the paper: a scalar).
  BetaKind beta = BetaKind::scalar;
  // true: p(y_t) ∝ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t)) (eq. 7); false: p(y_t) ∝ exp(L_o h_t).
  bool deep_output = true;
  // h_0 and c_0 from the mean annotation vector.
  InitState init_state = InitState::tanh;
  // Nonlinearity of the attention MLP.
  AttentionActivation attention_activation = AttentionActivation::tanh;
  // lambda of the doubly stochastic regulariser lambda * sum_i (1 - sum_t alpha_ti)^2 per caption
  // (eq. 14; "alpha_c" in the most used PyTorch tutorial). Off by default: with n = 196 regions and
  // about ten words it cannot be satisfied and pulls attention towards uniform; on the scenes, 0.2
  // left hard attention pointing at the named object in 28.7% of cases against 82.3% at 0
  // (models/README.md). The paper's COCO setting is 1 (datasets/coco_paper_training.json); the
  // original code's per-caption weight is alpha_c * batch / n (its mean over regions of a sum over
  // the batch).
  double alpha_c = 0.0;
  // Hard attention: weight of the REINFORCE term (the original code: 0.1).
  double lambda_r = 0.1;
  // Hard attention: weight of the entropy bonus (the original code: 0.002).
  double lambda_e = 0.002;
  // Hard attention: the moving-average baseline b <- decay * b + (1 - decay) * mean caption NLL.
  double baseline_decay = 0.9;
  // Hard attention: probability, drawn once per training minibatch, of training that minibatch with
  // the expected (soft) context instead of sampled locations ("semi-sampling"; the original: 0.5).
  double semi_sampling_p = 0.5;

  // Throws UsageError naming the first bad field: as a decoder option ("decoder option hidden_dim
  // must be at least 1 (got 0)"), or by its flag with `as_flags` ("--hidden-dim must be ...").
  // The fields set from the data (vocab_size, feature_dim, regions) are checked when `with_data`.
  // Also refuses a decoder whose parameters alone would not fit in this machine's memory (a
  // --hidden-dim of 100000000 would need 160 PB): UsageError before anything is allocated.
  void validate(bool with_data = true, bool as_flags = false) const;

  // The number of parameters (and buffer values) of the Decoder these options build, as a double
  // (it may not fit in 64 bits). The data fields count as 1 while unset.
  double parameter_count() const;

  static constexpr auto fields() {
    using O = DecoderOptions;
    return std::make_tuple(
        option("vocab_size", &O::vocab_size, "Vocabulary size V", nullptr, FieldUse::data),
        option("feature_dim", &O::feature_dim, "Feature dimension D", nullptr, FieldUse::data),
        option("regions", &O::regions, "Regions n (0 = any)", nullptr, FieldUse::data),
        option("embed_dim", &O::embed_dim, "Word embedding size m"),
        option("attention_dim", &O::attention_dim, "Attention MLP width"),
        option("hidden_dim", &O::hidden_dim, "LSTM width H"),
        option("dropout", &O::dropout, "Dropout on h_t and the deep output"),
        option("attention", &O::attention, "Attention: soft (deterministic) or hard (stochastic, REINFORCE)"),
        option("beta", &O::beta, "Gate on the context: scalar (the paper), vector (one per feature) or none"),
        option("deep_output", &O::deep_output, "Deep output layer L_o(E y + L_h h + L_z z) (eq. 7); off: L_o h"),
        option("init_state", &O::init_state,
               "h_0, c_0 from the mean feature: tanh (the original code), linear (the PyTorch tutorial) or zeros"),
        option("attention_activation", &O::attention_activation, "Nonlinearity of the attention MLP: tanh or relu"),
        option("alpha_c", &O::alpha_c, "Weight of the doubly stochastic attention regularisation (eq. 14)"),
        option("lambda_r", &O::lambda_r, "Hard attention: weight of the REINFORCE term"),
        option("lambda_e", &O::lambda_e, "Hard attention: weight of the entropy bonus"),
        option("baseline_decay", &O::baseline_decay, "Hard attention: decay of the moving-average baseline"),
        option("semi_sampling_p", &O::semi_sampling_p,
               "Hard attention: probability that a minibatch trains with the expected context"));
  }
};

// config.json's "decoder" object: every field, enums by name. from_json refuses a missing, unknown
// or mistyped field or an invalid value (ModelError naming it); it also reads the names bundles and
// checkpoints of satcap before format 3 used (init_mlp true/false for init_state tanh/zeros,
// doubly_stochastic_lambda for alpha_c).
void to_json(nlohmann::json& j, const DecoderOptions& o);
void from_json(const nlohmann::json& j, DecoderOptions& o);

// Bundles and checkpoints are written in the oldest format that holds them, so that an older satcap
// reads what it can read correctly and refuses the rest: the oldest format whose decoder options
// can hold `o` (3 for a linear initial state: formats 1-2 know tanh and zeros only, and their
// readers would put tanh on it; 1 otherwise), and `o` as that format writes it (formats 1-2 name
// alpha_c "doubly_stochastic_lambda" and init_state the flag "init_mlp").
int decoder_options_format(const DecoderOptions& o);
nlohmann::json decoder_options_json(const DecoderOptions& o, int format);

}  // namespace satcap
