#include "satcap/decode/search.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>

#include "satcap/runtime/error.h"

namespace satcap {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Puts the decoder in eval mode for the search and restores its mode afterwards.
class EvalGuard {
 public:
  explicit EvalGuard(Decoder d) : d_(d), was_training_(d->is_training()) { d_->eval(); }
  ~EvalGuard() {
    if (was_training_) d_->train(true);
  }

 private:
  Decoder d_;
  bool was_training_;
};

double penalty(const SearchOptions& o, int64_t len) {
  return o.length_penalty > 0 ? std::pow((5.0 + static_cast<double>(len)) / 6.0, o.length_penalty) : 1.0;
}

void check_inputs(const Decoder& decoder, const at::Tensor& features, const SearchTokens& tokens, const SearchOptions& o) {
  o.validate();
  const int64_t V = decoder->options().vocab_size;
  auto check_id = [&](const char* what, int64_t id) {
    if (id < 0 || id >= V)
      throw UsageError(std::string("search: ") + what + " id " + std::to_string(id) + " is outside the vocabulary [0, " +
                       std::to_string(V) + ")");
  };
  check_id("<start>", tokens.start);
  check_id("<end>", tokens.end);
  for (auto b : tokens.banned) {
    check_id("banned", b);
    if (b == tokens.end) throw UsageError("search: <end> cannot be banned");
  }
  if (features.dim() != 3) throw ModelError("search: features must be [B, n, D]");
}

// log_probs [R, V] with the banned ids at -inf, and NaN (a diverged model) at -inf too: never a
// candidate, so a hypothesis whose step gave NaN dies while the others go on, and no NaN reaches
// the host-side ordering of the candidates (where it would break std::sort's ordering).
at::Tensor ban(at::Tensor log_probs, const at::Tensor& banned) {
  log_probs.masked_fill_(log_probs.isnan(), -std::numeric_limits<float>::infinity());
  if (banned.defined()) log_probs.index_fill_(1, banned, -std::numeric_limits<float>::infinity());
  return log_probs;
}

at::Tensor banned_tensor(const SearchTokens& tokens, const at::Device& device) {
  if (tokens.banned.empty()) return {};
  return at::tensor(tokens.banned, at::TensorOptions().dtype(at::kLong)).to(device);
}

}  // namespace

void SearchOptions::validate(const std::string& flag_prefix) const {
  auto name = [&](const char* key) {
    if (flag_prefix.empty()) return std::string("search option ") + key;
    return flag_prefix + flag_of<SearchOptions>(key).substr(2);  // "--beam" -> flag_prefix + "beam"
  };
  auto fail = [&](const char* key, const std::string& rule, const std::string& got) {
    throw UsageError(name(key) + " must " + rule + " (got " + got + ")");
  };
  if (beam_size < 1 || beam_size > 1000) fail("beam_size", "be between 1 and 1000", std::to_string(beam_size));
  if (max_length < 1 || max_length > 1000) fail("max_length", "be between 1 and 1000", std::to_string(max_length));
  if (!(length_penalty >= 0 && std::isfinite(length_penalty))) {
    std::ostringstream s;
    s << length_penalty;
    fail("length_penalty", "be a finite number >= 0", s.str());
  }
  if (alternatives < 1 || alternatives > beam_size)
    fail("alternatives", "be between 1 and the beam width " + std::to_string(beam_size),
         std::to_string(alternatives));
}

std::vector<std::vector<Hypothesis>> search(Decoder decoder, const at::Tensor& features, const SearchTokens& tokens,
                                            const SearchOptions& options) {
  if (options.beam_size == 1) return greedy_search(decoder, features, tokens, options);
  return beam_search(decoder, features, tokens, options);
}

// ---------------------------------------------------------------------------------------------
// Greedy: argmax of (score + log p) at each step, lowest id among equal maxima; one host
// synchronisation per step (are all images done?).

std::vector<std::vector<Hypothesis>> greedy_search(Decoder decoder, const at::Tensor& features,
                                                   const SearchTokens& tokens, const SearchOptions& options) {
  check_inputs(decoder, features, tokens, options);
  torch::NoGradGuard no_grad;
  EvalGuard eval(decoder);
  const int64_t B = features.size(0);
  const int64_t V = decoder->options().vocab_size;
  const auto dev = features.device();
  const auto banned = banned_tensor(tokens, dev);
  auto long_opts = at::TensorOptions().dtype(at::kLong).device(dev);

  DecoderState st = decoder->init_state(features);
  auto prev = at::full({B}, tokens.start, long_opts);                  // [B]
  auto score = at::zeros({B}, features.options());                     // [B]  running sum of log-probs
  auto done = at::zeros({B}, long_opts.dtype(at::kBool));              // [B]
  auto ids = at::arange(V, long_opts).unsqueeze(0);                     // [1, V]
  std::vector<at::Tensor> step_tokens, step_alphas, step_scores;
  for (int t = 0; t < options.max_length; ++t) {
    auto out = decoder->step(prev, st, options.hard_decode);
    auto total = score.unsqueeze(1) + ban(out.log_probs, banned);      // [B, V]
    auto best = std::get<0>(total.max(1, true));                        // [B, 1]
    // The lowest id reaching the maximum (argmax's tie order is not specified on every device).
    auto tok = at::where(total == best, ids, at::full({}, V, long_opts)).amin(1);  // [B]
    // No finite candidate (NaN log-probabilities from a diverged model, or every allowed id at
    // -inf): the row stops here, unfinished. -1 marks it in the tokens; it is never fed back.
    auto stuck = at::isfinite(best.squeeze(1)).logical_not().logical_and(done.logical_not());  // [B]
    tok = at::where(stuck, at::full({}, -1, long_opts), tok);
    tok = at::where(done, at::full({}, tokens.end, long_opts), tok);
    score = at::where(done.logical_or(stuck), score, best.squeeze(1));
    step_tokens.push_back(tok);
    step_alphas.push_back(out.alpha);
    step_scores.push_back(score);
    done = done.logical_or(tok == tokens.end).logical_or(stuck);
    prev = at::where(stuck, at::full({}, tokens.end, long_opts), tok);
    if (done.all().item<bool>()) break;
  }
  auto toks = at::stack(step_tokens, 1).cpu();                          // [B, S]
  auto scores = at::stack(step_scores, 1).to(at::kCPU, at::kDouble);    // [B, S]
  auto alphas = at::stack(step_alphas, 1).to(at::kCPU, at::kFloat);     // [B, S, n]
  const int64_t S = toks.size(1);
  auto tacc = toks.accessor<int64_t, 2>();
  auto sacc = scores.accessor<double, 2>();
  std::vector<std::vector<Hypothesis>> results(B);
  for (int64_t b = 0; b < B; ++b) {
    Hypothesis h;
    h.finished = false;
    int64_t last = S - 1;
    for (int64_t t = 0; t < S; ++t) {
      if (tacc[b][t] == -1) {  // stuck: its score at t is still that of the words before
        last = t;
        break;
      }
      if (tacc[b][t] == tokens.end) {
        h.finished = true;
        last = t;
        break;
      }
      h.tokens.push_back(tacc[b][t]);
    }
    h.log_prob = sacc[b][last];
    const int64_t len = static_cast<int64_t>(h.tokens.size()) + (h.finished ? 1 : 0);
    h.score = h.log_prob / penalty(options, len);
    h.alphas = alphas[b].slice(0, 0, static_cast<int64_t>(h.tokens.size())).clone();
    results[b].push_back(std::move(h));
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// Beam search. Per step: one step() for all rows [A * K] of the A images still searching, the
// candidates score + log p ranked per image by a stable sort over [K * V] (lower beam, then lower
// token first among ties), and the top 2K copied to the host (one synchronisation per step), where
// each image's beam is rebuilt: a candidate ending in <end> within the top K becomes a finished
// hypothesis, the others fill the K slots of the next beam (2K candidates always hold K that do not
// end, since each beam has only one <end>). An image stops when no live beam can beat its N-th best
// finished hypothesis (see below), has no valid candidate left, or reaches max_length; its rows are
// then dropped from the batch. Slots without a valid candidate (K > V at the first
// steps, banned ids) hold -inf and are never returned. The attention rows travel with the rows:
// the history [A * K, t, n] is reordered by the same indices as the decoder state.

namespace {

struct Alive {
  std::vector<int64_t> tokens;
  double log_prob = kNegInf;
};

// The alpha rows of the hypotheses that left the beam at one step, gathered from the history in
// one index_select after the step ([count, t, n] or [count, t+1, n]): a hypothesis keeps only its own
// rows alive, not the whole [A * K, t, n] history of that step.
struct StepRows {
  std::vector<int64_t> rows;  // history rows, in the order of `gathered`
  at::Tensor gathered;
};

struct Pending {  // a hypothesis whose alpha rows are still on the device
  std::vector<int64_t> tokens;
  double log_prob = 0;
  double score = 0;
  std::shared_ptr<StepRows> source;  // its alpha rows are source->gathered[index]: [len, n]
  int64_t index = 0;
  bool finished = true;
};

}  // namespace

// The C best of each row of `total` [A, K*V], in the order of a stable descending sort (among
// equal scores the lower flat index, that is the lower beam, then the lower token id, first), as
// CPU tensors [A, C] (double values, int64 indices). topk is linear in K*V where a full sort of
// every row was the search's largest cost (satcap bench: ~0.4 s per step for 50 images at beam 5,
// V = 10,000, one core). A row where the C-th value is tied with values left outside (finite ties
// at the cut) falls back to the stable sort, so the result is exactly the sort's.
static std::pair<at::Tensor, at::Tensor> best_candidates(const at::Tensor& total, int64_t C) {
  auto top = at::topk(total, C, /*dim=*/1, /*largest=*/true, /*sorted=*/true);
  at::Tensor values = std::get<0>(top), indices = std::get<1>(top);
  auto cut = values.narrow(1, C - 1, 1);                                        // [A, 1]
  auto tied = total.ge(cut).sum(1).gt(C).logical_and(cut.squeeze(1).isfinite());  // [A]
  if (tied.any().item<bool>()) {
    auto rows = tied.nonzero().squeeze(1);
    auto sorted = at::sort(total.index_select(0, rows), /*stable=*/true, /*dim=*/1, /*descending=*/true);
    values = values.index_copy(0, rows, std::get<0>(sorted).narrow(1, 0, C));
    indices = indices.index_copy(0, rows, std::get<1>(sorted).narrow(1, 0, C));
  }
  values = values.to(at::kCPU, at::kDouble).contiguous();
  indices = indices.cpu().contiguous();
  // topk's order among equal values is unspecified: put ties in index order, as the stable sort.
  auto v = values.accessor<double, 2>();
  auto i = indices.accessor<int64_t, 2>();
  std::vector<std::pair<double, int64_t>> row(static_cast<size_t>(C));
  for (int64_t a = 0; a < values.size(0); ++a) {
    for (int64_t c = 0; c < C; ++c) row[static_cast<size_t>(c)] = {v[a][c], i[a][c]};
    std::sort(row.begin(), row.end(), [](const auto& x, const auto& y) {
      return x.first > y.first || (x.first == y.first && x.second < y.second);
    });
    for (int64_t c = 0; c < C; ++c) {
      v[a][c] = row[static_cast<size_t>(c)].first;
      i[a][c] = row[static_cast<size_t>(c)].second;
    }
  }
  return {values, indices};
}

std::vector<std::vector<Hypothesis>> beam_search(Decoder decoder, const at::Tensor& features,
                                                 const SearchTokens& tokens, const SearchOptions& options) {
  check_inputs(decoder, features, tokens, options);
  torch::NoGradGuard no_grad;
  EvalGuard eval(decoder);
  const int64_t B = features.size(0);
  const int64_t K = options.beam_size;
  const int64_t V = decoder->options().vocab_size;
  const int64_t C = std::min<int64_t>(2 * K, K * V);  // candidates looked at per image
  const auto dev = features.device();
  const auto banned = banned_tensor(tokens, dev);
  auto long_opts = at::TensorOptions().dtype(at::kLong).device(dev);
  const size_t N = static_cast<size_t>(options.alternatives);

  DecoderState st = decoder->init_state(features);
  st.expand_beams(K);
  const int64_t n = features.size(1);

  std::vector<int64_t> active(B);  // active[p] = original image index of position p
  for (int64_t b = 0; b < B; ++b) active[b] = b;
  std::vector<std::vector<Alive>> alive(B, std::vector<Alive>(K));
  for (int64_t b = 0; b < B; ++b) alive[b][0].log_prob = 0;  // one live beam at first: no duplicates
  std::vector<std::vector<Pending>> finished(B), cut(B);

  // Host-built per-row inputs, copied to the device once per step.
  auto host_long = [&](const std::vector<int64_t>& v) {
    return at::tensor(v, at::TensorOptions().dtype(at::kLong)).to(dev);
  };
  auto scores_tensor = [&]() {  // [A, K]
    std::vector<float> v;
    for (size_t p = 0; p < active.size(); ++p)
      for (const auto& a : alive[active[p]]) v.push_back(static_cast<float>(a.log_prob));
    return at::tensor(v, at::TensorOptions().dtype(at::kFloat))
        .view({static_cast<int64_t>(active.size()), K})
        .to(dev, features.scalar_type());
  };
  auto prev = at::full({B * K}, tokens.start, long_opts);     // [A * K]
  auto scores = scores_tensor();                                // [A, K]
  at::Tensor history = at::zeros({B * K, 0, n}, features.options());  // [A * K, t, n]

  for (int t = 0; t < options.max_length && !active.empty(); ++t) {
    const int64_t A = static_cast<int64_t>(active.size());
    auto out = decoder->step(prev, st, options.hard_decode);                    // [A*K, V], [A*K, n]
    auto total = (scores.unsqueeze(2) + ban(out.log_probs, banned).view({A, K, V})).view({A, K * V});
    auto [top_v, top_i] = best_candidates(total, C);                         // [A, C] CPU double, int64
    auto vacc = top_v.accessor<double, 2>();
    auto iacc = top_i.accessor<int64_t, 2>();
    // The history including this step's alpha: row r's new word is attended with alpha_t[r].
    auto extended = at::cat({history, out.alpha.unsqueeze(1)}, 1);             // [A*K, t+1, n]

    std::vector<int64_t> keep, rows, next_prev;
    std::vector<std::vector<Alive>> next_alive(A);
    auto ended_rows = std::make_shared<StepRows>();  // from history (without this step's alpha)
    auto cut_rows = std::make_shared<StepRows>();    // from extended (with it)
    auto take = [](const std::shared_ptr<StepRows>& from, int64_t row, Pending& h) {
      h.source = from;
      h.index = static_cast<int64_t>(from->rows.size());
      from->rows.push_back(row);
    };
    const bool last_step = t + 1 == options.max_length;
    for (int64_t p = 0; p < A; ++p) {
      const int64_t img = active[p];
      auto& beams = alive[img];
      std::vector<std::pair<int64_t, Alive>> chosen;  // (source slot, hypothesis)
      bool any_candidate = false;
      for (int64_t c = 0; c < C; ++c) {
        const double v = vacc[p][c];
        if (!std::isfinite(v)) break;  // -inf: no valid candidates left (sorted last)
        any_candidate = true;
        const int64_t slot = iacc[p][c] / V, tok = iacc[p][c] % V;
        if (tok == tokens.end) {
          if (c < K) {
            Pending h;
            h.tokens = beams[slot].tokens;
            h.log_prob = v;
            h.score = v / penalty(options, static_cast<int64_t>(h.tokens.size()) + 1);
            take(ended_rows, p * K + slot, h);  // [len, n]: the <end> step's alpha is not a word's
            finished[img].push_back(std::move(h));
          }
          continue;
        }
        Alive a;
        a.tokens = beams[slot].tokens;
        a.tokens.push_back(tok);
        a.log_prob = v;
        chosen.emplace_back(slot, std::move(a));
        if (static_cast<int64_t>(chosen.size()) == K) break;
      }
      // Is this image done? Stable sort keeps the earlier (shorter) hypothesis first among ties.
      auto& fin = finished[img];
      std::stable_sort(fin.begin(), fin.end(), [](const Pending& a, const Pending& b) { return a.score > b.score; });
      bool done = chosen.empty() || last_step;
      if (!done && fin.size() >= N) {
        // Stop when the best live beam, scored at its current length, cannot beat the N-th best
        // finished one. Without a length penalty this is exact (log-probabilities only decrease);
        // with one it is the usual heuristic (Hugging Face's default), since a longer caption's
        // normalised score can still rise. Not stopping at "K finished" keeps a confident long
        // caption from being crowded out by unlikely short ones, and keeps beam 1 == greedy.
        const double best_alive = chosen.front().second.log_prob / penalty(options, t + 1);
        done = best_alive <= fin[N - 1].score;
      }
      if (done) {
        if (fin.size() < N && !any_candidate) {
          // No finite candidate at all (NaN log-probabilities from a diverged model): the live beams
          // stop here, unfinished, so that the image still gets a hypothesis.
          for (int64_t slot = 0; slot < K; ++slot) {
            if (!std::isfinite(beams[slot].log_prob)) continue;
            Pending h;
            h.tokens = beams[slot].tokens;
            h.log_prob = beams[slot].log_prob;
            h.score = h.log_prob / penalty(options, static_cast<int64_t>(h.tokens.size()));
            take(ended_rows, p * K + slot, h);  // [len, n]: history without this step
            h.finished = false;
            cut[img].push_back(std::move(h));
          }
        } else if (fin.size() < N) {  // fill with the best cut-off hypotheses (at max_length)
          for (size_t j = 0; j < chosen.size(); ++j) {
            Pending h;
            h.tokens = chosen[j].second.tokens;
            h.log_prob = chosen[j].second.log_prob;
            h.score = h.log_prob / penalty(options, static_cast<int64_t>(h.tokens.size()));
            take(cut_rows, p * K + chosen[j].first, h);
            h.finished = false;
            cut[img].push_back(std::move(h));
          }
        }
        continue;
      }
      keep.push_back(p);
      while (static_cast<int64_t>(chosen.size()) < K) {  // unfillable slots: -inf, never returned
        Alive pad;
        chosen.emplace_back(0, std::move(pad));
      }
      auto& na = next_alive[p];
      for (auto& [slot, a] : chosen) {
        rows.push_back(p * K + slot);
        next_prev.push_back(a.tokens.empty() ? tokens.start : a.tokens.back());
        na.push_back(std::move(a));
      }
    }
    if (!ended_rows->rows.empty()) ended_rows->gathered = history.index_select(0, host_long(ended_rows->rows));
    if (!cut_rows->rows.empty()) cut_rows->gathered = extended.index_select(0, host_long(cut_rows->rows));
    if (keep.empty()) {
      active.clear();
      break;
    }
    std::vector<int64_t> new_active;
    for (auto p : keep) {
      new_active.push_back(active[p]);
      alive[active[p]] = std::move(next_alive[p]);
    }
    auto rows_t = host_long(rows);  // [A' * K] rows of the old layout
    history = extended.index_select(0, rows_t);
    if (static_cast<int64_t>(keep.size()) < A) {
      // Drop the finished images, then reorder within the remaining ones (new layout).
      st.select_images(host_long(keep));
      std::vector<int64_t> local(rows.size());
      for (size_t r = 0; r < rows.size(); ++r) local[r] = static_cast<int64_t>(r / K) * K + rows[r] % K;
      st.reorder(host_long(local));
    } else {
      st.reorder(rows_t);
    }
    active = std::move(new_active);
    prev = host_long(next_prev);
    scores = scores_tensor();
  }

  std::vector<std::vector<Hypothesis>> results(B);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<Pending*> pick;
    for (auto& h : finished[b])
      if (pick.size() < N) pick.push_back(&h);
    std::stable_sort(cut[b].begin(), cut[b].end(), [](const Pending& x, const Pending& y) { return x.score > y.score; });
    for (auto& h : cut[b])
      if (pick.size() < N) pick.push_back(&h);
    for (auto* h : pick) {
      Hypothesis r;
      r.tokens = h->tokens;
      r.log_prob = h->log_prob;
      r.score = h->score;
      // Always a copy, so the result owns exactly its rows (also on the CPU, where .to would alias).
      r.alphas = h->source->gathered[h->index]
                     .to(at::kCPU, at::kFloat, /*non_blocking=*/false, /*copy=*/true)
                     .contiguous();
      r.finished = h->finished;
      results[b].push_back(std::move(r));
    }
  }
  return results;
}

}  // namespace satcap
