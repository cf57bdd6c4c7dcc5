// The training step's counted FLOPs, term by term (bench.h): what the bench divides by the step's
// time to hold it against the sgemm peak.
#include "bench/bench.h"

namespace satcap {

std::vector<FlopTerm> training_flops(const DecoderOptions& s, const std::vector<int64_t>& caption_words,
                                     int64_t parameters) {
  const double n = static_cast<double>(s.regions), D = static_cast<double>(s.feature_dim);
  const double m = static_cast<double>(s.embed_dim), A = static_cast<double>(s.attention_dim);
  const double H = static_cast<double>(s.hidden_dim), V = static_cast<double>(s.vocab_size);
  const double beta_dim = s.beta == BetaKind::none ? 0 : s.beta == BetaKind::scalar ? 1 : D;
  const double captions = static_cast<double>(caption_words.size());
  double steps = 0;  // decoding steps over the batch: words + <end> per caption
  for (auto w : caption_words) steps += static_cast<double>(w + 1);
  const double out_in = s.deep_output ? m : H;  // L_o's input width

  std::vector<FlopTerm> t;
  // Once per caption. The features need no gradient: backward is the weight gradient only.
  t.push_back({"encoder projection W_a a_i [n,D]x[D,A]", captions * 2 * n * D * A, 1});
  if (s.init_state != InitState::zeros) t.push_back({"f_init,h and f_init,c on mean_i a_i", captions * (n * D + 2 * 2 * D * H), 1});
  // Per step.
  t.push_back({"attention U_a h_{t-1} [H]x[H,A]", steps * 2 * H * A, 2});
  t.push_back({"attention scores w^T tanh(.) and softmax", steps * (2 * n * A + 2 * n * A + 5 * n), 2});
  if (s.attention == AttentionKind::hard) {
    t.push_back({"context a_{s_t} (gather) and log alpha, entropy", steps * 4 * n, 2});
  } else {
    // Backward: d alpha only (the features need no gradient).
    t.push_back({"context sum_i alpha_ti a_i [n]x[n,D]", steps * 2 * n * D, 1});
  }
  if (beta_dim > 0) t.push_back({"gate beta_t = sigmoid(f_beta h), beta_t z_t", steps * (2 * H * beta_dim + 2 * D), 2});
  t.push_back({"LSTM gates [m+D+H]x[m+D+H,4H] and cell", steps * (2 * (m + D + H) * 4 * H + 10 * H), 2});
  if (s.deep_output) t.push_back({"deep output L_h h_t + L_z z_t + E y_{t-1}", steps * (2 * H * m + 2 * D * m + 2 * m), 2});
  t.push_back({"vocabulary projection L_o [" + std::string(s.deep_output ? "m" : "H") + "]x[.,V]", steps * 2 * out_in * V, 2});
  t.push_back({"log-softmax and NLL over V", steps * 4 * V, 2});
  t.push_back({"Adam update (12 per parameter)", 12.0 * static_cast<double>(parameters), 0});
  return t;
}

double total_flops(const std::vector<FlopTerm>& terms) {
  double sum = 0;
  for (const auto& term : terms) sum += term.total();
  return sum;
}

}  // namespace satcap
