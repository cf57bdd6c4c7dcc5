// Greedy and beam search over the decoder's step API: beam 1 == greedy, scores and attention rows
// equal what teacher forcing the returned captions gives, limits, wide beams, batching, ties.
#include "testing.h"

#include <ATen/ATen.h>
#include <torch/optim/adam.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "satcap/decode/search.h"
#include "satcap/model/decoder.h"
#include "satcap/runtime/error.h"

using namespace satcap;

namespace {

// <pad> = 0, <start> = 1, <end> = 2, words 3..V-1.
SearchTokens special() {
  SearchTokens t;
  t.start = 1;
  t.end = 2;
  t.banned = {0, 1};
  return t;
}

DecoderOptions tiny(int V = 9, AttentionKind kind = AttentionKind::soft) {
  DecoderOptions o;
  o.vocab_size = V;
  o.feature_dim = 5;
  o.regions = 6;
  o.embed_dim = 6;
  o.attention_dim = 5;
  o.hidden_dim = 8;
  o.attention = kind;
  return o;
}

// A random decoder whose <end> logit is shifted by end_bias (captions of a few words).
Decoder make_decoder(uint64_t seed, int V = 9, double end_bias = 3.0, AttentionKind kind = AttentionKind::soft) {
  torch::manual_seed(seed);
  Decoder d(tiny(V, kind));
  {
    torch::NoGradGuard ng;
    d->out_vocab->weight.mul_(20);  // peakier distributions than the small initialisation gives
    d->out_vocab->bias[2].add_(end_bias);
  }
  d->eval();
  return d;
}

// A decoder briefly trained (dropout 0, Adam) to caption `features` [B, 6, 5] with random
// captions of 2..5 words: its searches give captions of several words, with beams that overtake
// each other, unlike a random decoder (which mostly says "" or repeats one word).
Decoder trained_decoder(uint64_t seed, const at::Tensor& features, int steps = 60) {
  torch::manual_seed(seed);
  auto o = tiny(9);
  o.dropout = 0;
  o.embed_dim = 8;
  o.hidden_dim = 12;
  Decoder d(o);
  const int64_t B = features.size(0), T = 7;
  auto caps = at::zeros({B, T}, at::kLong);
  auto lens = at::randint(4, 8, {B}, at::kLong);  // 2..5 words
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = lens[b].item<int64_t>();
    caps[b][0] = 1;
    for (int64_t t = 1; t + 1 < L; ++t) caps[b][t] = at::randint(3, 9, {1}, at::kLong).item<int64_t>();
    caps[b][L - 1] = 2;
  }
  torch::optim::Adam opt(d->parameters(), torch::optim::AdamOptions(0.03));
  d->train();
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    d->loss(d->forward(features, caps, lens)).total.backward();
    opt.step();
  }
  d->eval();
  return d;
}

// Teacher-forces <start> tokens (<end>) and returns (sum of log-probs, alpha rows [len, n]).
std::pair<double, at::Tensor> teacher_force(Decoder& d, const at::Tensor& features_1, const Hypothesis& h) {
  std::vector<int64_t> seq{1};
  seq.insert(seq.end(), h.tokens.begin(), h.tokens.end());
  if (h.finished) seq.push_back(2);
  if (seq.size() < 2) seq.push_back(2);  // never happens: a hypothesis has a word or an <end>
  const int64_t T = static_cast<int64_t>(seq.size());
  auto caps = at::tensor(seq).view({1, T});
  torch::NoGradGuard ng;
  auto out = d->forward(features_1, caps, at::full({1}, T, at::kLong));
  auto lp = at::log_softmax(out.padded_logits(), 2).gather(2, out.targets.unsqueeze(2)).squeeze(2);  // [1, T-1]
  return {lp.sum().item<double>(), out.alphas[0].slice(0, 0, static_cast<int64_t>(h.tokens.size()))};
}

}  // namespace

TEST_CASE("search options and token ids are validated", "[search]") {
  SearchOptions o;
  REQUIRE_NOTHROW(o.validate());
  o.beam_size = 0;
  REQUIRE_THROWS_WITH(o.validate(), Catch::Contains("beam_size"));
  o = {};
  o.alternatives = 4;
  REQUIRE_THROWS_WITH(o.validate(), Catch::Contains("alternatives"));
  o = {};
  o.max_length = 0;
  REQUIRE_THROWS_AS(o.validate(), UsageError);
  o = {};
  o.length_penalty = -1;
  REQUIRE_THROWS_AS(o.validate(), UsageError);

  auto d = make_decoder(1);
  auto f = at::randn({1, 6, 5});
  auto t = special();
  t.end = 9;
  REQUIRE_THROWS_AS(beam_search(d, f, t, SearchOptions{}), UsageError);
  t = special();
  t.banned.push_back(2);
  REQUIRE_THROWS_AS(greedy_search(d, f, t, SearchOptions{}), UsageError);
  REQUIRE_THROWS_AS(beam_search(d, at::randn({1, 6, 4}), special(), SearchOptions{}), ModelError);
}

TEST_CASE("beam search with beam 1 is greedy search, tokens and scores", "[search]") {
  for (uint64_t seed : {11, 12, 13}) {
    auto f = at::randn({5, 6, 5});
    auto d = seed == 13 ? make_decoder(seed) : trained_decoder(seed, f);
    for (double lp : {0.0, 1.0}) {
      SearchOptions o;
      o.beam_size = 1;
      o.max_length = 8;
      o.length_penalty = lp;
      auto g = greedy_search(d, f, special(), o);
      auto b = beam_search(d, f, special(), o);
      REQUIRE(g.size() == 5);
      REQUIRE(b.size() == 5);
      for (int i = 0; i < 5; ++i) {
        REQUIRE(g[i].size() == 1);
        REQUIRE(b[i].size() == 1);
        REQUIRE(g[i][0].tokens == b[i][0].tokens);
        // The same words; the numbers to float rounding: beam search drops finished images from
        // its batch, and a matrix product of other row counts may round differently (OpenBLAS).
        REQUIRE(g[i][0].log_prob == Approx(b[i][0].log_prob).epsilon(1e-6));
        REQUIRE(g[i][0].score == Approx(b[i][0].score).epsilon(1e-6));
        REQUIRE(g[i][0].finished == b[i][0].finished);
        REQUIRE(g[i][0].alphas.sizes() == b[i][0].alphas.sizes());
        REQUIRE(at::allclose(g[i][0].alphas, b[i][0].alphas, 1e-5, 1e-7));
      }
    }
  }
}

TEST_CASE("hypotheses are sorted and their scores and attention equal teacher forcing", "[search]") {
  for (uint64_t seed : {21, 22}) {
    auto f = at::randn({3, 6, 5});
    auto d = trained_decoder(seed, f, seed == 21 ? 60 : 20);
    for (int K : {1, 4}) {
      SearchOptions o;
      o.beam_size = K;
      o.alternatives = K;
      o.max_length = 7;
      auto res = search(d, f, special(), o);
      int finished = 0, total = 0;
      for (int i = 0; i < 3; ++i) {
        REQUIRE_FALSE(res[i].empty());
        std::set<std::vector<int64_t>> distinct;
        for (size_t j = 0; j < res[i].size(); ++j) {
          const auto& h = res[i][j];
          if (j > 0 && h.finished == res[i][j - 1].finished) REQUIRE(h.score <= res[i][j - 1].score);
          if (j > 0) REQUIRE((h.finished || !res[i][j - 1].finished));  // complete captions first
          REQUIRE(std::isfinite(h.score));
          REQUIRE(h.score == h.log_prob);  // no length penalty
          REQUIRE(static_cast<int>(h.tokens.size()) <= o.max_length);
          for (auto tok : h.tokens) REQUIRE(tok >= 3);  // no <pad>, <start> or <end> inside
          distinct.insert(h.tokens);
          auto [lp, alphas] = teacher_force(d, f.slice(0, i, i + 1), h);
          REQUIRE(h.log_prob == Approx(lp).margin(1e-4));
          REQUIRE(h.alphas.sizes() == at::IntArrayRef({static_cast<int64_t>(h.tokens.size()), 6}));
          if (!h.tokens.empty()) {
            REQUIRE(at::allclose(h.alphas.sum(1), at::ones({static_cast<int64_t>(h.tokens.size())}), 1e-5, 1e-5));
            REQUIRE(at::allclose(h.alphas, alphas, 1e-4, 1e-5));  // rows followed every reorder
          }
          finished += h.finished;
          ++total;
        }
        REQUIRE(distinct.size() == res[i].size());
      }
      INFO("finished " << finished << " of " << total);
      REQUIRE(finished >= total / 2);  // most hypotheses end with <end> before max_length
      REQUIRE(total >= 3 * K - 1);
    }
    // The best of a wider beam is never worse than greedy on these models (they are confident:
    // the greedy caption is found by the beam, not crowded out by unlikely short captions).
    SearchOptions g;
    g.beam_size = 1;
    g.max_length = 7;
    SearchOptions w = g;
    w.beam_size = 4;
    auto rg = search(d, f, special(), g);
    auto rw = search(d, f, special(), w);
    for (int i = 0; i < 3; ++i) REQUIRE(rw[i][0].score >= rg[i][0].score - 1e-5);
  }
}

TEST_CASE("max_length is respected and uncompleted hypotheses are still returned", "[search]") {
  auto d = make_decoder(41, 9, /*end_bias=*/-50);  // <end> practically never chosen
  auto f = at::randn({2, 6, 5});
  for (int K : {1, 3}) {
    SearchOptions o;
    o.beam_size = K;
    o.alternatives = K;
    o.max_length = 4;
    auto res = search(d, f, special(), o);
    for (const auto& hyps : res) {
      REQUIRE(hyps.size() == static_cast<size_t>(K));
      for (const auto& h : hyps) {
        REQUIRE_FALSE(h.finished);
        REQUIRE(h.tokens.size() == 4);
        REQUIRE(std::isfinite(h.score));
        REQUIRE(h.alphas.size(0) == 4);
      }
    }
  }
  SearchOptions o;
  o.max_length = 1;
  o.beam_size = 2;
  auto one = search(make_decoder(42), f, special(), o);
  for (const auto& hyps : one) REQUIRE(hyps.at(0).tokens.size() <= 1);
}

TEST_CASE("a beam wider than the vocabulary works and returns only real hypotheses", "[search]") {
  auto d = make_decoder(51, /*V=*/4);  // <pad> <start> <end> and one word
  auto f = at::randn({3, 6, 5});
  SearchOptions o;
  o.beam_size = 10;
  o.alternatives = 10;
  o.max_length = 5;
  auto res = beam_search(d, f, special(), o);
  for (const auto& hyps : res) {
    REQUIRE_FALSE(hyps.empty());
    REQUIRE(hyps.size() <= 10);
    std::set<std::vector<int64_t>> distinct;
    for (const auto& h : hyps) {
      REQUIRE(std::isfinite(h.score));
      for (auto tok : h.tokens) REQUIRE(tok == 3);
      distinct.insert(h.tokens);
    }
    REQUIRE(distinct.size() == hyps.size());
    // With one word the finished hypotheses are "", "w", "ww", ... and the last cut one (5 words).
    REQUIRE(hyps.size() == 6);
  }
  // Without banning anything, V = 4 and K = 10 still works.
  auto t = special();
  t.banned.clear();
  REQUIRE_NOTHROW(beam_search(d, f, t, o));
}

TEST_CASE("a batch of images decodes exactly as each image alone", "[search]") {
  auto f = at::randn({4, 6, 5});
  auto d = trained_decoder(61, f);
  SearchOptions o;
  o.beam_size = 3;
  o.alternatives = 3;
  o.max_length = 8;
  for (double lp : {0.0, 0.7}) {
    o.length_penalty = lp;
    auto batched = beam_search(d, f, special(), o);
    for (int i = 0; i < 4; ++i) {
      auto alone = beam_search(d, f.slice(0, i, i + 1), special(), o);
      REQUIRE(alone[0].size() == batched[i].size());
      for (size_t j = 0; j < alone[0].size(); ++j) {
        REQUIRE(alone[0][j].tokens == batched[i][j].tokens);
        REQUIRE(alone[0][j].score == Approx(batched[i][j].score).margin(1e-5));
        REQUIRE(at::allclose(alone[0][j].alphas, batched[i][j].alphas, 1e-5, 1e-6));
      }
    }
  }
}

TEST_CASE("ties are broken towards the lower beam, then the lower token id", "[search]") {
  auto d = make_decoder(71, /*V=*/9);
  {
    torch::NoGradGuard ng;
    d->out_vocab->weight.zero_();  // every token has probability 1/9 at every step
    d->out_vocab->bias.zero_();
  }
  auto f = at::randn({2, 6, 5});
  auto t = special();  // <pad> and <start> banned; <end> = 2 is the lowest allowed id
  SearchOptions o;
  o.beam_size = 1;
  o.max_length = 5;
  auto g = greedy_search(d, f, t, o);
  REQUIRE(g[0][0].tokens.empty());  // <end> (id 2) wins every tie
  REQUIRE(g[0][0].log_prob == Approx(-std::log(9.0)).epsilon(1e-6));
  o.beam_size = 3;
  o.alternatives = 3;
  auto b1 = beam_search(d, f, t, o);
  auto b2 = beam_search(d, f, t, o);
  for (int i = 0; i < 2; ++i) {
    // Step 1: "<end>" ranks first (finished ""), then words 3, 4, 5 fill the beam. Step 2: the first
    // beam "3" ends first ("3"), and "3 3", "3 4", "3 5" fill the beam. Step 3: "3 3" ends: three
    // finished hypotheses, sorted by score.
    REQUIRE(b1[i].size() == 3);
    REQUIRE(b1[i][0].tokens == std::vector<int64_t>{});
    REQUIRE(b1[i][1].tokens == std::vector<int64_t>{3});
    REQUIRE(b1[i][2].tokens == std::vector<int64_t>{3, 3});
    for (int j = 0; j < 3; ++j) REQUIRE(b1[i][j].tokens == b2[i][j].tokens);
  }
}

TEST_CASE("hard-attention decoders search with the expected, argmax or sampled context", "[search]") {
  auto d = make_decoder(81, 9, 3.0, AttentionKind::hard);
  auto f = at::randn({2, 6, 5});
  for (auto mode : {HardDecode::expected, HardDecode::argmax, HardDecode::sample}) {
    SearchOptions o;
    o.beam_size = 2;
    o.max_length = 6;
    o.hard_decode = mode;
    auto res = search(d, f, special(), o);
    for (const auto& hyps : res) {
      REQUIRE(hyps.size() == 1);
      REQUIRE(std::isfinite(hyps[0].score));
      if (!hyps[0].tokens.empty())
        REQUIRE(at::allclose(hyps[0].alphas.sum(1), at::ones({hyps[0].alphas.size(0)}), 1e-5, 1e-5));
    }
    if (mode == HardDecode::expected) {  // the default decoding matches teacher forcing (eval: expected)
      auto [lp, alphas] = teacher_force(d, f.slice(0, 0, 1), res[0][0]);
      REQUIRE(res[0][0].log_prob == Approx(lp).margin(1e-4));
    }
  }
  REQUIRE_FALSE(d->is_training());
  d->train();
  SearchOptions o;
  search(d, f, special(), o);
  REQUIRE(d->is_training());  // mode restored
}

TEST_CASE("an empty batch gives an empty result", "[search]") {
  auto d = make_decoder(93);
  auto f = at::randn({0, 6, 5});
  for (int K : {1, 3}) {
    SearchOptions o;
    o.beam_size = K;
    std::vector<std::vector<Hypothesis>> res;
    REQUIRE_NOTHROW(res = search(d, f, special(), o));
    REQUIRE(res.empty());
  }
}

TEST_CASE("returned attention rows own their memory, not the search's whole history", "[search]") {
  auto f = at::randn({3, 6, 5});
  auto d = trained_decoder(91, f, 30);
  for (int K : {1, 3}) {
    SearchOptions o;
    o.beam_size = K;
    o.alternatives = K;
    o.max_length = 7;
    auto res = K == 1 ? greedy_search(d, f, special(), o) : beam_search(d, f, special(), o);
    for (const auto& hyps : res)
      for (const auto& h : hyps) {
        REQUIRE(h.alphas.is_contiguous());
        // A view into the [images * beam, steps, n] history would keep all of it alive as long as
        // the caller keeps the result (for every image of every batch of a caption run).
        REQUIRE(h.alphas.storage().nbytes() == static_cast<size_t>(h.alphas.numel()) * sizeof(float));
      }
  }
}

TEST_CASE("a decoder that produces NaN neither crashes the search nor leaves an image without a hypothesis",
          "[search]") {
  auto d = make_decoder(92);
  {
    torch::NoGradGuard ng;
    d->out_vocab->bias.fill_(std::numeric_limits<float>::quiet_NaN());  // a diverged model
  }
  auto f = at::randn({2, 6, 5});
  for (int K : {1, 3}) {
    SearchOptions o;
    o.beam_size = K;
    o.max_length = 5;
    std::vector<std::vector<Hypothesis>> res;
    // Greedy used to feed the out-of-range id V back into the embedding.
    REQUIRE_NOTHROW(res = K == 1 ? greedy_search(d, f, special(), o) : beam_search(d, f, special(), o));
    REQUIRE(res.size() == 2);
    for (const auto& hyps : res) {
      REQUIRE(hyps.size() == 1);
      REQUIRE_FALSE(hyps[0].finished);
      REQUIRE(hyps[0].tokens.empty());
      REQUIRE(hyps[0].alphas.size(0) == 0);
    }
  }
}

TEST_CASE("the default tokens never let the search emit <pad> or <start>", "[search]") {
  auto d = make_decoder(94);
  {
    torch::NoGradGuard ng;
    d->out_vocab->bias[0].add_(20);  // a model that likes <pad> and <start>
    d->out_vocab->bias[1].add_(19);
  }
  auto f = at::randn({2, 6, 5});
  SearchTokens t;  // the defaults: the Vocabulary's ids
  REQUIRE(t.start == 1);
  REQUIRE(t.end == 2);
  for (int K : {1, 3}) {
    SearchOptions o;
    o.beam_size = K;
    o.max_length = 6;
    for (const auto& hyps : search(d, f, t, o))
      for (const auto& h : hyps)
        for (auto tok : h.tokens) REQUIRE(tok >= 2);
  }
}

TEST_CASE("NaN log-probabilities in some beams leave the other beams searching", "[search]") {
  auto f = at::randn({3, 6, 5});
  auto d = trained_decoder(95, f, 30);
  SearchOptions clean;
  clean.beam_size = 4;
  clean.max_length = 6;
  const auto first = search(d, f, special(), clean)[0][0].tokens;
  REQUIRE_FALSE(first.empty());
  const int64_t w = first[0];  // in image 0's beam after the first step
  {
    torch::NoGradGuard ng;
    d->embed->weight[w].fill_(std::numeric_limits<float>::quiet_NaN());  // every step after word w gives NaN
  }
  for (int K : {1, 4, 10}) {
    SearchOptions o;
    o.beam_size = K;
    o.alternatives = K;
    o.max_length = 6;
    auto res = search(d, f, special(), o);
    for (size_t i = 0; i < res.size(); ++i) {
      const auto& hyps = res[i];
      REQUIRE_FALSE(hyps.empty());
      size_t longest = 0;
      int finished = 0;
      for (const auto& h : hyps) {
        REQUIRE(std::isfinite(h.log_prob));
        REQUIRE(std::isfinite(h.score));
        for (size_t j = 0; j + 1 < h.tokens.size(); ++j) REQUIRE(h.tokens[j] != w);  // nothing follows w
        if (h.finished && !h.tokens.empty()) REQUIRE(h.tokens.back() != w);       // not even <end>
        longest = std::max(longest, h.tokens.size());
        finished += h.finished;
      }
      // Image 0's other beams go on: it stops with longer captions, or with K finished ones (a NaN
      // ranked first used to stop the whole image after its first word).
      INFO("K " << K << " image " << i << " longest " << longest << " finished " << finished);
      if (i == 0 && K > 1) REQUIRE((longest >= 2 || finished >= K));
    }
  }
}
