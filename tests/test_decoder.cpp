// The Show, Attend and Tell decoder: shapes, masking, the doubly stochastic regulariser, gradient
// flow, the step API against teacher forcing, and the hard-attention REINFORCE surrogate checked
// against the exact gradient of the expected loss.
#include "testing.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/utils.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <vector>

#include "satcap/model/decoder.h"
#include "satcap/ops/fused_kernels.h"
#include "satcap/runtime/error.h"

using namespace satcap;

namespace {

DecoderOptions tiny_options(AttentionKind kind = AttentionKind::soft) {
  DecoderOptions o;
  o.vocab_size = 7;
  o.feature_dim = 5;
  o.regions = 4;
  o.embed_dim = 6;
  o.attention_dim = 5;
  o.hidden_dim = 8;
  o.dropout = 0;
  o.attention = kind;
  return o;
}

// Captions [B, T] with <start> = 1, <end> = 2, <pad> = 0, words 3..V-1, of the given lengths
// (tokens including <start> and <end>).
std::pair<at::Tensor, at::Tensor> make_captions(const std::vector<int64_t>& lengths, int64_t T, int64_t V,
                                                int64_t pad_value = 0) {
  const int64_t B = static_cast<int64_t>(lengths.size());
  auto caps = at::full({B, T}, pad_value, at::kLong);
  auto words = at::randint(3, V, {B, T}, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    caps[b][0] = 1;
    for (int64_t t = 1; t + 1 < lengths[b]; ++t) caps[b][t] = words[b][t];
    caps[b][lengths[b] - 1] = 2;
  }
  return {caps, at::tensor(lengths, at::kLong)};
}

bool verbose() { return std::getenv("SATCAP_VERBOSE_TESTS") != nullptr; }

}  // namespace

TEST_CASE("decoder options validate and round-trip through JSON", "[decoder]") {
  auto o = tiny_options();
  REQUIRE_NOTHROW(o.validate());
  DecoderOptions d;  // defaults need the required sizes
  REQUIRE_THROWS_AS(d.validate(), UsageError);
  auto bad = o;
  bad.dropout = 1.0;
  REQUIRE_THROWS_WITH(bad.validate(), Catch::Contains("dropout"));
  bad = o;
  bad.semi_sampling_p = 1.5;
  REQUIRE_THROWS_AS(bad.validate(), UsageError);
  bad = o;
  bad.lambda_r = -1;
  REQUIRE_THROWS_WITH(bad.validate(), Catch::Contains("lambda_r"));

  o.attention = AttentionKind::hard;
  o.beta = BetaKind::vector;
  o.attention_activation = AttentionActivation::relu;
  o.deep_output = false;
  o.lambda_e = 0.125;
  nlohmann::json j = o;
  REQUIRE(j.size() == 17);
  REQUIRE(j["attention"] == "hard");
  DecoderOptions back = j.get<DecoderOptions>();
  REQUIRE(nlohmann::json(back) == j);
  REQUIRE(back.beta == BetaKind::vector);

  auto missing = j;
  missing.erase("hidden_dim");
  REQUIRE_THROWS_WITH(missing.get<DecoderOptions>(), Catch::Contains("hidden_dim"));
  REQUIRE_THROWS_AS(missing.get<DecoderOptions>(), ModelError);
  auto unknown = j;
  unknown["beta"] = "sideways";
  REQUIRE_THROWS_AS(unknown.get<DecoderOptions>(), ModelError);
  auto wrong = j;
  wrong["vocab_size"] = "many";
  REQUIRE_THROWS_AS(wrong.get<DecoderOptions>(), ModelError);
}

TEST_CASE("the decoder registers stable state-dict names and the baseline buffer", "[decoder]") {
  Decoder dec(tiny_options(AttentionKind::hard));
  auto params = dec->named_parameters();
  for (const char* k : {"embed.weight", "att_features.weight", "att_features.bias", "att_hidden.weight",
                        "att_score.weight", "f_beta.weight", "lstm.weight_ih", "init_h.weight", "init_c.weight",
                        "out_hidden.weight", "out_context.weight", "out_vocab.weight", "out_vocab.bias"})
    REQUIRE(params.contains(k));
  REQUIRE(dec->named_buffers().contains("reinforce_baseline"));
  auto o = tiny_options();
  o.beta = BetaKind::none;
  o.init_state = InitState::zeros;
  o.deep_output = false;
  Decoder plain(o);
  REQUIRE_FALSE(plain->named_parameters().contains("f_beta.weight"));
  REQUIRE_FALSE(plain->named_parameters().contains("init_h.weight"));
  REQUIRE(plain->out_vocab->weight.size(1) == o.hidden_dim);
}

TEST_CASE("init_state linear is f_init(mean a_i) without tanh, tanh and zeros as documented", "[decoder]") {
  torch::manual_seed(11);
  auto o = tiny_options();
  o.init_state = InitState::linear;
  Decoder linear(o);
  linear->eval();
  at::NoGradGuard no_grad;
  linear->init_h->weight.mul_(4);  // values beyond tanh's range, so that a stray tanh shows
  linear->init_c->weight.mul_(4);
  const auto features = at::randn({3, 4, 5}) * 2;
  const auto mean = features.mean(1);
  const auto want_h = at::matmul(mean, linear->init_h->weight.t()) + linear->init_h->bias;
  const auto want_c = at::matmul(mean, linear->init_c->weight.t()) + linear->init_c->bias;
  REQUIRE(want_h.abs().max().item<float>() > 1.5f);
  auto st = linear->init_state(features);
  CHECK(at::allclose(st.h, want_h, 1e-5, 1e-6));
  CHECK(at::allclose(st.c, want_c, 1e-5, 1e-6));

  // The same weights under tanh (the original code) and zeros.
  o.init_state = InitState::tanh;
  Decoder squashed(o);
  auto theirs = linear->named_parameters();
  for (auto& p : squashed->named_parameters()) p.value().copy_(theirs[p.key()]);
  auto st_tanh = squashed->init_state(features);
  CHECK(at::allclose(st_tanh.h, at::tanh(want_h), 1e-5, 1e-6));
  CHECK(at::allclose(st_tanh.c, at::tanh(want_c), 1e-5, 1e-6));
  CHECK_FALSE(at::allclose(st_tanh.h, st.h, 1e-3, 1e-3));
  // The first step's word distribution depends on which one it is.
  const auto first = at::full({3}, 1, at::kLong);
  CHECK_FALSE(at::allclose(linear->step(first, st).log_probs, squashed->step(first, st_tanh).log_probs, 1e-4, 1e-4));
  o.init_state = InitState::zeros;
  Decoder zeros(o);
  auto st_zeros = zeros->init_state(features);
  CHECK(at::equal(st_zeros.h, at::zeros_like(want_h)));
  CHECK(at::equal(st_zeros.c, at::zeros_like(want_c)));
}

TEST_CASE("teacher-forced forward has the documented shapes", "[decoder]") {
  torch::manual_seed(1);
  for (auto kind : {AttentionKind::soft, AttentionKind::hard}) {
    Decoder dec(tiny_options(kind));
    auto features = at::randn({3, 4, 5});
    auto [caps, lens] = make_captions({6, 4, 3}, 6, 7);
    auto out = dec->forward(features, caps, lens, HardDecode::sample);
    REQUIRE(out.padded_logits().sizes() == at::IntArrayRef({3, 5, 7}));
    REQUIRE(out.alphas.sizes() == at::IntArrayRef({3, 5, 4}));
    REQUIRE(out.mask.sizes() == at::IntArrayRef({3, 5}));
    REQUIRE(out.mask.sum().item<double>() == 5 + 3 + 2);
    REQUIRE(at::allclose(out.alphas.sum(2), at::ones({3, 5})));
    REQUIRE(out.sampled == (kind == AttentionKind::hard));
    if (kind == AttentionKind::hard) {
      REQUIRE(out.samples.sizes() == at::IntArrayRef({3, 5}));
      REQUIRE(out.samples.min().item<int64_t>() >= 0);
      REQUIRE(out.samples.max().item<int64_t>() < 4);
      // log alpha_t[s_t] is the log of the sampled region's weight.
      auto picked = out.alphas.gather(2, out.samples.unsqueeze(2)).squeeze(2);
      REQUIRE(at::allclose(out.sample_log_probs.exp(), picked, 1e-5, 1e-6));
    }
  }
  Decoder dec(tiny_options());
  auto [caps, lens] = make_captions({3}, 3, 7);
  REQUIRE_THROWS_AS(dec->forward(at::randn({1, 4, 6}), caps, lens), ModelError);  // wrong D
  REQUIRE_THROWS_AS(dec->forward(at::randn({1, 5, 5}), caps, lens), ModelError);  // wrong n
  REQUIRE_THROWS_AS(dec->forward(at::randn({2, 4, 5}), caps, lens), UsageError);  // B mismatch
}

TEST_CASE("padding steps change neither the loss nor its gradients", "[decoder]") {
  torch::manual_seed(2);
  for (auto kind : {AttentionKind::soft, AttentionKind::hard}) {
    auto o = tiny_options(kind);
    Decoder dec(o);
    dec->eval();  // hard attention: expected context, no baseline update
    auto features = at::randn({2, 4, 5});
    auto [caps, lens] = make_captions({5, 3}, 5, 7);
    auto run = [&](const at::Tensor& c) {
      dec->zero_grad();
      auto terms = dec->loss(dec->forward(features, c, lens));
      terms.total.backward();
      std::vector<at::Tensor> grads;
      for (auto& p : dec->parameters()) grads.push_back(p.grad().clone());
      return std::make_pair(terms, grads);
    };
    auto [ref, ref_grads] = run(caps);
    // Longer padding, filled with arbitrary words instead of <pad>.
    auto longer = at::cat({caps, at::randint(3, 7, {2, 4}, at::kLong)}, 1);
    longer.index_put_({1, at::indexing::Slice(3, at::indexing::None)}, at::randint(0, 7, {6}, at::kLong));
    auto [other, other_grads] = run(longer);
    REQUIRE(at::allclose(ref.total, other.total, 1e-6, 1e-6));
    REQUIRE(at::allclose(ref.ds_reg, other.ds_reg, 1e-6, 1e-6));
    REQUIRE(at::allclose(ref.caption_nll, other.caption_nll, 1e-6, 1e-6));
    REQUIRE(ref.tokens.item<double>() == 4 + 2);
    for (size_t i = 0; i < ref_grads.size(); ++i) REQUIRE(at::allclose(ref_grads[i], other_grads[i], 1e-5, 1e-6));
  }
}

TEST_CASE("the doubly stochastic regulariser and the NLL follow their formulas on a hand-made output", "[decoder]") {
  auto o = tiny_options();
  o.alpha_c = 0.7;
  Decoder dec(o);
  const int64_t B = 2, S = 3, n = 4, V = 7;
  // Hand-made alphas: caption 0 has 3 valid steps, caption 1 has 2 (its third step is padding).
  std::vector<float> a = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.5f, 0.0f, 0.0f, 0.25f, 0.25f, 0.25f, 0.25f,
                          0.7f, 0.1f, 0.1f, 0.1f, 0.0f, 0.0f, 0.0f, 1.0f, 0.9f, 0.05f, 0.05f, 0.0f};
  DecoderOutput out;
  out.alphas = at::tensor(a).view({B, S, n});
  out.valid_logits = at::zeros({5, V});  // the 5 valid positions, uniform: every token costs log V
  out.targets = at::full({B, S}, 3, at::kLong);
  out.mask = at::tensor(std::vector<float>{1, 1, 1, 1, 1, 0}).view({B, S});
  auto r = dec->loss(out);
  double ds = 0;
  const int valid[2] = {3, 2};
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < n; ++i) {
      double cover = 0;
      for (int t = 0; t < valid[b]; ++t) cover += a[(b * S + t) * n + i];
      ds += (1 - cover) * (1 - cover);
    }
  const double N = 5;
  REQUIRE(r.ds_reg.item<double>() == Approx(0.7 * ds / N).epsilon(1e-6));
  REQUIRE(r.nll.item<double>() == Approx(std::log(7.0)).epsilon(1e-6));
  REQUIRE(r.caption_nll[1].item<double>() == Approx(2 * std::log(7.0)).epsilon(1e-6));
  REQUIRE(r.total.item<double>() == Approx(std::log(7.0) + 0.7 * ds / N).epsilon(1e-6));
  REQUIRE(r.reinforce.item<double>() == 0);
  REQUIRE(r.entropy.item<double>() == 0);
  out.valid_logits = at::zeros({4, V});  // one row short of the mask's 5 valid positions
  REQUIRE_THROWS_AS(dec->loss(out), UsageError);
}

TEST_CASE("gradients reach every parameter", "[decoder]") {
  torch::manual_seed(3);
  struct Variant {
    AttentionKind kind;
    BetaKind beta;
    bool deep;
    AttentionActivation act;
  };
  for (auto v : {Variant{AttentionKind::soft, BetaKind::scalar, true, AttentionActivation::tanh},
                 Variant{AttentionKind::soft, BetaKind::vector, false, AttentionActivation::relu},
                 Variant{AttentionKind::hard, BetaKind::scalar, true, AttentionActivation::tanh}}) {
    auto o = tiny_options(v.kind);
    o.beta = v.beta;
    o.deep_output = v.deep;
    o.attention_activation = v.act;
    o.dropout = 0.5;
    o.semi_sampling_p = 0;  // hard: sampled locations, so REINFORCE must carry the attention's gradient
    Decoder dec(o);
    dec->train();
    auto features = at::randn({3, 4, 5});
    auto [caps, lens] = make_captions({6, 5, 4}, 6, 7);
    auto terms = dec->loss(dec->forward(features, caps, lens));
    REQUIRE(std::isfinite(terms.total.item<double>()));
    terms.total.backward();
    for (const auto& p : dec->named_parameters()) {
      INFO(p.key());
      REQUIRE(p.value().grad().defined());
      REQUIRE(p.value().grad().abs().max().item<double>() > 0);
    }
  }
}

TEST_CASE("step() reproduces teacher forcing, and reorder and select_images move rows", "[decoder]") {
  torch::manual_seed(4);
  for (auto kind : {AttentionKind::soft, AttentionKind::hard}) {
    auto o = tiny_options(kind);
    o.beta = BetaKind::vector;
    Decoder dec(o);
    dec->eval();
    auto features = at::randn({3, 4, 5});
    auto [caps, lens] = make_captions({5, 5, 5}, 5, 7);
    auto out = dec->forward(features, caps, lens, HardDecode::expected);
    auto logp = at::log_softmax(out.padded_logits(), 2);
    auto st = dec->init_state(features);
    for (int64_t t = 0; t < 4; ++t) {
      auto s = dec->step(caps.select(1, t), st);
      REQUIRE(at::allclose(s.log_probs, logp.select(1, t), 1e-5, 1e-5));
      REQUIRE(at::allclose(s.alpha, out.alphas.select(1, t), 1e-5, 1e-6));
    }
  }
  Decoder dec(tiny_options());
  dec->eval();
  auto features = at::randn({2, 4, 5});
  auto st = dec->init_state(features);
  st.expand_beams(3);
  REQUIRE(st.rows() == 6);
  auto h = st.h.clone();
  auto idx = at::tensor(std::vector<int64_t>{2, 2, 0, 5, 3, 4});
  st.reorder(idx);
  REQUIRE(at::equal(st.h, h.index_select(0, idx)));
  st.select_images(at::tensor(std::vector<int64_t>{1}));
  REQUIRE(st.rows() == 3);
  REQUIRE(at::equal(st.features, features.slice(0, 1, 2)));
  REQUIRE(at::equal(st.h, h.index_select(0, at::tensor(std::vector<int64_t>{5, 3, 4}))));
}

TEST_CASE("semi-sampling is drawn once per training minibatch with probability p", "[decoder]") {
  torch::manual_seed(5);
  auto features = at::randn({2, 4, 5});
  auto [caps, lens] = make_captions({4, 3}, 4, 7);
  for (double p : {0.0, 0.5, 1.0}) {
    auto o = tiny_options(AttentionKind::hard);
    o.semi_sampling_p = p;
    Decoder dec(o);
    dec->train();
    int sampled = 0;
    const int trials = 60;
    for (int i = 0; i < trials; ++i) sampled += dec->forward(features, caps, lens).sampled ? 1 : 0;
    if (p == 0.0) REQUIRE(sampled == trials);
    if (p == 1.0) REQUIRE(sampled == 0);
    if (p == 0.5) {  // binomial(60, 0.5): mean 30, sd 3.9
      REQUIRE(sampled > 12);
      REQUIRE(sampled < 48);
    }
    dec->eval();
    REQUIRE_FALSE(dec->forward(features, caps, lens).sampled);  // decoding default: expected context
  }
}

TEST_CASE("the REINFORCE baseline follows b <- 0.9 b + 0.1 mean NLL", "[decoder]") {
  torch::manual_seed(6);
  auto o = tiny_options(AttentionKind::hard);
  o.semi_sampling_p = 0.5;  // the update happens after every minibatch, semi-sampled or not
  Decoder dec(o);
  dec->train();
  REQUIRE(dec->baseline().item<double>() == 0);
  double b = 0;
  for (int k = 0; k < 5; ++k) {
    auto features = at::randn({3, 4, 5});
    auto [caps, lens] = make_captions({5, 4, 3}, 5, 7);
    auto out = dec->forward(features, caps, lens);
    auto terms = dec->loss(out);
    REQUIRE(terms.baseline.item<double>() == Approx(b).margin(1e-6));  // the b used is the old one
    if (out.sampled) {
      // reinforce = lambda_r * sum_n (NLL_n - b) sum_t log alpha_t[s_t] / N, recomputed here.
      auto lp = (out.sample_log_probs * out.mask).sum(1);
      double expect = o.lambda_r * ((terms.caption_nll - b) * lp).sum().item<double>() / terms.tokens.item<double>();
      REQUIRE(terms.reinforce.item<double>() == Approx(expect).epsilon(1e-5).margin(1e-7));
    } else {
      REQUIRE(terms.reinforce.item<double>() == 0);
    }
    b = 0.9 * b + 0.1 * terms.caption_nll.mean().item<double>();
    REQUIRE(dec->baseline().item<double>() == Approx(b).epsilon(1e-6));
  }
  REQUIRE(b > 0);
  // Validation (eval mode) leaves it alone.
  dec->eval();
  auto features = at::randn({3, 4, 5});
  auto [caps, lens] = make_captions({5, 4, 3}, 5, 7);
  dec->loss(dec->forward(features, caps, lens));
  REQUIRE(dec->baseline().item<double>() == Approx(b).epsilon(1e-6));
}

// What is checked: for hard attention with lambda_r = 1 (and lambda_e = 0, lambda = 0, no
// semi-sampling) the surrogate's gradient is an unbiased estimate of the gradient of the expected
// loss  E_{s ~ p(s|a)}[NLL(s)] / L  (L = tokens per caption), whatever the baseline b. The exact
// value comes from enumerating all n^S location sequences s = (s_1..s_S) with p(s) = prod_t
// alpha_t[s_t] (alpha_t depends on s_<t through the LSTM state), as one batch through forward_at.
// The Monte Carlo estimate is the mean over 50 independent batches of 400 sampled captions; each
// batch's gradient is one draw, so the standard error of the mean is sd(batch gradients) / sqrt(50).
// Every parameter element must be within 5 standard errors, the mean squared z-score must not be
// far above 1 (elements are strongly correlated, so it scatters: 0.3-1.8 over seeds), and the
// error's norm must be within 3 times the standard error's norm.
// Control: without the REINFORCE term (the path-wise gradient only) the same samples must be far
// off, so the test can fail.
TEST_CASE("the hard-attention surrogate's gradient matches the exact gradient of the expected loss", "[decoder]") {
  torch::manual_seed(7);
  DecoderOptions o;
  o.vocab_size = 5;
  o.feature_dim = 3;
  o.regions = 3;
  o.embed_dim = 4;
  o.attention_dim = 4;
  o.hidden_dim = 5;
  o.dropout = 0;
  o.attention = AttentionKind::hard;
  o.alpha_c = 0;
  o.lambda_r = 1;
  o.lambda_e = 0;
  o.semi_sampling_p = 0;
  Decoder dec(o);
  dec->to(at::kDouble);
  dec->eval();  // dropout is 0 anyway; eval keeps the baseline fixed
  {
    torch::NoGradGuard ng;
    dec->named_buffers()["reinforce_baseline"].fill_(0.8);  // any b: it must not bias the gradient
    for (auto& p : dec->parameters()) p.mul_(2.0);          // sharper attention, larger REINFORCE part
  }
  const int64_t n = 3, S = 3;
  auto features = at::randn({1, n, 3}, at::kDouble) * 2;
  auto caption = at::tensor(std::vector<int64_t>{1, 3, 4, 2}).view({1, 4});  // <start> w w <end>
  auto params = dec->parameters();
  auto flat_grad = [&](const at::Tensor& loss) {
    auto g = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true, false, /*allow_unused=*/true);
    std::vector<at::Tensor> parts;
    for (size_t i = 0; i < g.size(); ++i)
      parts.push_back(g[i].defined() ? g[i].reshape({-1}) : at::zeros({params[i].numel()}, at::kDouble));
    return at::cat(parts);
  };

  // Exact: all 27 location sequences in one batch.
  const int64_t E = 27;
  auto locs = at::zeros({E, S}, at::kLong);
  for (int64_t e = 0; e < E; ++e) {
    locs[e][0] = e / 9;
    locs[e][1] = (e / 3) % 3;
    locs[e][2] = e % 3;
  }
  auto ex = dec->forward_at(features.expand({E, n, 3}), caption.expand({E, 4}), at::full({E}, 4, at::kLong), locs);
  auto ex_nll = -at::log_softmax(ex.padded_logits(), 2).gather(2, ex.targets.unsqueeze(2)).squeeze(2).sum(1);  // [E]
  auto ex_p = ex.sample_log_probs.sum(1).exp();                                                      // [E]
  REQUIRE(ex_p.sum().item<double>() == Approx(1.0).epsilon(1e-9));
  auto expected_loss = (ex_p * ex_nll).sum() / S;
  auto g_exact = flat_grad(expected_loss);

  // Monte Carlo.
  const int chunks = 50, M = 400;
  std::vector<at::Tensor> g_full, g_path;
  for (int k = 0; k < chunks; ++k) {
    auto out = dec->forward(features.expand({M, n, 3}), caption.expand({M, 4}), at::full({M}, 4, at::kLong),
                            HardDecode::sample);
    REQUIRE(out.sampled);
    auto terms = dec->loss(out);
    g_full.push_back(flat_grad(terms.total));
    g_path.push_back(flat_grad(terms.nll));
  }
  auto stats = [&](const std::vector<at::Tensor>& gs) {
    auto G = at::stack(gs);                            // [chunks, P]
    auto mean = G.mean(0);
    auto se = G.std(0) / std::sqrt(static_cast<double>(chunks));
    auto random = se > 1e-12;                          // elements the sampling touches
    auto z = ((mean - g_exact) / se.clamp_min(1e-12)).masked_select(random);
    auto fixed_err = (mean - g_exact).masked_fill(random, 0).abs().max().item<double>();
    double rel = ((mean - g_exact).norm() / g_exact.norm()).item<double>();
    double max_z = z.abs().max().item<double>();
    double mean_z2 = z.pow(2).mean().item<double>();
    double rel_se = (se.norm() / g_exact.norm()).item<double>();
    return std::make_tuple(rel, max_z, mean_z2, fixed_err, rel_se, z.numel());
  };
  auto [rel, max_z, mean_z2, fixed_err, rel_se, count] = stats(g_full);
  auto [p_rel, p_max_z, p_mean_z2, p_fixed, p_rel_se, p_count] = stats(g_path);
  if (verbose())
    std::printf(
        "estimator: %ld random gradient elements; surrogate: |g_mc - g|/|g| = %.4f (|se|/|g| = %.4f), max |z| = %.2f, "
        "mean z^2 = %.2f, deterministic elements max err %.2g; path-wise only: |g_mc - g|/|g| = %.3f, max |z| = %.1f, "
        "mean z^2 = %.1f\n",
        static_cast<long>(count), rel, rel_se, max_z, mean_z2, fixed_err, p_rel, p_max_z, p_mean_z2);
  INFO("rel " << rel << " rel_se " << rel_se << " max_z " << max_z << " mean_z2 " << mean_z2);
  REQUIRE(count > 100);
  REQUIRE(max_z < 5);
  REQUIRE(mean_z2 < 3.0);
  REQUIRE(rel < 3 * rel_se);
  REQUIRE(fixed_err < 1e-9);
  // The control: dropping the score-function term leaves a clearly biased gradient.
  REQUIRE(p_max_z > 10);
  REQUIRE(p_mean_z2 > 10);
}

TEST_CASE("padding steps change neither the REINFORCE term nor the entropy bonus", "[decoder]") {
  torch::manual_seed(8);
  auto o = tiny_options(AttentionKind::hard);
  Decoder dec(o);
  dec->eval();  // keeps the baseline fixed; the loss still has the REINFORCE term for given locations
  {
    torch::NoGradGuard ng;
    dec->named_buffers()["reinforce_baseline"].fill_(0.5);
  }
  auto features = at::randn({2, 4, 5});
  auto [caps, lens] = make_captions({5, 3}, 5, 7);
  auto locs = at::randint(0, 4, {2, 4}, at::kLong);
  auto run = [&](const at::Tensor& c, const at::Tensor& l) {
    dec->zero_grad();
    auto terms = dec->loss(dec->forward_at(features, c, lens, l));
    terms.total.backward();
    std::vector<at::Tensor> grads;
    for (auto& p : dec->parameters()) grads.push_back(p.grad().clone());
    return std::make_pair(terms, grads);
  };
  auto [ref, ref_grads] = run(caps, locs);
  REQUIRE(ref.reinforce.item<double>() != 0);
  REQUIRE(ref.entropy.item<double>() > 0);
  // Longer padding with arbitrary words and arbitrary locations on the padding steps.
  auto longer = at::cat({caps, at::randint(3, 7, {2, 3}, at::kLong)}, 1);
  longer.index_put_({1, at::indexing::Slice(3, at::indexing::None)}, at::randint(0, 7, {5}, at::kLong));
  auto longer_locs = at::cat({locs, at::randint(0, 4, {2, 3}, at::kLong)}, 1);
  longer_locs.index_put_({1, at::indexing::Slice(2, at::indexing::None)}, at::randint(0, 4, {5}, at::kLong));
  auto [other, other_grads] = run(longer, longer_locs);
  REQUIRE(at::allclose(ref.reinforce, other.reinforce, 1e-6, 1e-6));
  REQUIRE(at::allclose(ref.entropy, other.entropy, 1e-6, 1e-6));
  REQUIRE(at::allclose(ref.total, other.total, 1e-6, 1e-6));
  for (size_t i = 0; i < ref_grads.size(); ++i) REQUIRE(at::allclose(ref_grads[i], other_grads[i], 1e-5, 1e-6));
}

TEST_CASE("an empty batch goes through the forward, the loss and the step API", "[decoder]") {
  for (auto kind : {AttentionKind::soft, AttentionKind::hard}) {
    Decoder dec(tiny_options(kind));
    dec->eval();
    auto features = at::randn({0, 4, 5});
    auto caps = at::zeros({0, 4}, at::kLong);
    auto lens = at::zeros({0}, at::kLong);
    DecoderOutput out;
    REQUIRE_NOTHROW(out = dec->forward(features, caps, lens, HardDecode::sample));
    REQUIRE(out.padded_logits().sizes() == at::IntArrayRef({0, 3, 7}));
    REQUIRE(out.alphas.sizes() == at::IntArrayRef({0, 3, 4}));
    auto terms = dec->loss(out);
    REQUIRE(terms.total.item<double>() == 0);
    auto st = dec->init_state(features);
    st.expand_beams(3);
    auto s = dec->step(at::zeros({0}, at::kLong), st);
    REQUIRE(s.log_probs.sizes() == at::IntArrayRef({0, 7}));
    REQUIRE(s.alpha.sizes() == at::IntArrayRef({0, 4}));
  }
}

// The forward computes only valid steps (rows sorted by length, a shrinking batch): each caption of
// a mixed-length batch must get what it gets alone, unpadded, in a batch of one.
TEST_CASE("each caption of a mixed-length batch gets what it gets alone, gradients included", "[decoder]") {
  torch::manual_seed(9);
  enum class Mode { soft, hard_given, hard_argmax, hard_expected };
  for (auto mode : {Mode::soft, Mode::hard_given, Mode::hard_argmax, Mode::hard_expected}) {
    INFO("mode " << static_cast<int>(mode));
    const auto kind = mode == Mode::soft ? AttentionKind::soft : AttentionKind::hard;
    auto o = tiny_options(kind);
    o.beta = BetaKind::vector;
    Decoder dec(o);
    dec->eval();  // no dropout, no baseline update; given locations still carry REINFORCE
    {
      torch::NoGradGuard ng;
      dec->named_buffers()["reinforce_baseline"].fill_(0.7);
    }
    const std::vector<int64_t> lengths{3, 7, 3, 2, 6};  // unsorted, a tie, a caption of one step
    const int64_t B = 5, T = 8, S = T - 1;
    auto features = at::randn({B, 4, 5});
    auto [caps, lens] = make_captions(lengths, T, 7);
    auto locs = at::randint(0, 4, {B, S}, at::kLong);
    auto run = [&](const at::Tensor& f, const at::Tensor& c, const at::Tensor& l, const at::Tensor& s) {
      switch (mode) {
        case Mode::soft: return dec->forward(f, c, l);
        case Mode::hard_given: return dec->forward_at(f, c, l, s);
        case Mode::hard_argmax: return dec->forward(f, c, l, HardDecode::argmax);
        default: return dec->forward(f, c, l, HardDecode::expected);
      }
    };
    auto grads_of = [&](const at::Tensor& objective) {
      dec->zero_grad();
      objective.backward();
      std::vector<at::Tensor> g;
      for (auto& p : dec->parameters()) g.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
      return g;
    };
    auto out = run(features, caps, lens, locs);
    const auto logits = out.padded_logits();  // [B, S, V]
    auto terms = dec->loss(out);
    REQUIRE(terms.tokens.item<double>() == 2 + 6 + 2 + 1 + 5);
    // Every term is (sum over captions) / N: N * total is the sum of each caption's N_b * total_b.
    auto batch_grads = grads_of(terms.total * terms.tokens);
    REQUIRE(at::allclose(out.alphas.sum(2), at::ones({B, S}), 1e-5, 1e-6));  // padding: alpha uniform
    std::vector<at::Tensor> sum_grads;
    double sum_objective = 0;
    for (int64_t b = 0; b < B; ++b) {
      INFO("caption " << b);
      const int64_t len = lengths[static_cast<size_t>(b)], L = len - 1;
      auto one = run(features.slice(0, b, b + 1), caps.slice(0, b, b + 1).slice(1, 0, len), lens.slice(0, b, b + 1),
                     locs.slice(0, b, b + 1).slice(1, 0, L));
      auto one_terms = dec->loss(one);
      REQUIRE(at::allclose(logits[b].slice(0, 0, L), one.padded_logits()[0], 1e-5, 1e-5));
      REQUIRE(at::allclose(out.alphas[b].slice(0, 0, L), one.alphas[0], 1e-5, 1e-6));
      REQUIRE(logits[b].slice(0, L, S).abs().max().item<double>() == 0);  // padding: logits 0
      REQUIRE(at::allclose(terms.caption_nll[b], one_terms.caption_nll[0], 1e-5, 1e-5));
      if (kind == AttentionKind::hard) {
        REQUIRE(at::allclose(out.entropies[b].slice(0, 0, L), one.entropies[0], 1e-5, 1e-6));
      }
      if (mode == Mode::hard_given || mode == Mode::hard_argmax) {
        REQUIRE(at::equal(out.samples[b].slice(0, 0, L), one.samples[0]));
        REQUIRE(at::allclose(out.sample_log_probs[b].slice(0, 0, L), one.sample_log_probs[0], 1e-5, 1e-6));
      }
      auto objective = one_terms.total * one_terms.tokens;
      sum_objective += objective.item<double>();
      auto g = grads_of(objective);
      if (sum_grads.empty()) {
        sum_grads = g;
      } else {
        for (size_t i = 0; i < g.size(); ++i) sum_grads[i] += g[i];
      }
    }
    REQUIRE(std::abs((terms.total * terms.tokens).item<double>() - sum_objective) < 1e-4);
    for (size_t i = 0; i < batch_grads.size(); ++i) {
      INFO("parameter " << i);
      REQUIRE(at::allclose(batch_grads[i], sum_grads[i], 1e-4, 1e-5));
    }
  }
}

TEST_CASE("the device-generic training forward (what CUDA runs) equals the fused CPU one, loss and gradients",
          "[decoder][ops]") {
  // The two paths share nothing per step: the generic one folds the biases into its products,
  // runs the cell as GenericLstmCell and computes hard attention's log alpha after the loop.
  struct Variant {
    AttentionKind kind;
    BetaKind beta;
    double alpha_c;
    bool given;  // hard: at given locations (the same s_t on both paths)
  };
  for (auto v : {Variant{AttentionKind::soft, BetaKind::scalar, 1.0, false}, Variant{AttentionKind::soft, BetaKind::vector, 0.0, false},
                 Variant{AttentionKind::hard, BetaKind::scalar, 1.0, true}, Variant{AttentionKind::hard, BetaKind::vector, 0.0, false}}) {
    auto o = tiny_options(v.kind);
    o.beta = v.beta;
    o.alpha_c = v.alpha_c;
    o.semi_sampling_p = v.kind == AttentionKind::hard && !v.given ? 1.0 : 0.0;  // hard, not given: expected context
    torch::manual_seed(5);
    Decoder dec(o);
    dec->train();
    auto features = at::randn({4, 4, 5});
    auto [caps, lens] = make_captions({7, 5, 6, 3}, 7, 7);
    auto locations = at::randint(0, 4, {4, 6}, at::kLong);
    auto run = [&](bool generic) {
      std::optional<GenericOpsScope> scope;
      if (generic) scope.emplace();
      {
        at::NoGradGuard no_grad;
        dec->baseline().fill_(0.5);  // the loss moves the REINFORCE baseline: both runs start from the same b
      }
      for (auto& p : dec->parameters()) p.mutable_grad() = at::Tensor();
      DecoderOutput out = v.given ? dec->forward_at(features, caps, lens, locations) : dec->forward(features, caps, lens);
      auto terms = dec->loss(out);
      terms.total.backward();
      std::vector<at::Tensor> grads{terms.total.detach().clone()};
      for (auto& p : dec->parameters()) grads.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
      return grads;
    };
    const auto fused = run(false);
    const auto generic = run(true);
    REQUIRE(fused.size() == generic.size());
    INFO(enum_name(v.kind) << " beta " << enum_name(v.beta) << " alpha_c " << v.alpha_c);
    CHECK(generic[0].item<double>() == Approx(fused[0].item<double>()).epsilon(1e-5));
    for (size_t i = 1; i < fused.size(); ++i) {
      INFO("parameter " << i - 1);
      CHECK((generic[i] - fused[i]).abs().max().item<double>() <= 1e-5 * (1 + fused[i].abs().max().item<double>()));
    }
  }
}
