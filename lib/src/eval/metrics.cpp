// COCO caption metrics (see metrics.h). Written from the official pycocoevalcap sources:
// bleu/bleu_scorer.py, rouge/rouge.py, cider/cider_scorer.py; captions are tokenised by
// ptb_tokenize() (ptb_tokenizer.cpp).
#include "satcap/eval/metrics.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cmath>
#include <set>

#include "satcap/eval/ptb_tokenizer.h"
#include "satcap/runtime/error.h"

namespace satcap {
namespace {

// ---------------------------------------------------------------- n-grams
using Ngram = std::string;  // tokens joined by a space (tokens never contain spaces)
using Counts = std::map<Ngram, int>;

std::vector<std::string> split_spaces(const std::string& s) {  // Python str.split()
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// precook(): counts of the n-grams of orders 1..4; `by_order` gets them split by order.
std::array<Counts, 4> precook(const std::vector<std::string>& words) {
  std::array<Counts, 4> counts;
  for (size_t k = 1; k <= 4; ++k) {
    for (size_t i = 0; i + k <= words.size(); ++i) {
      std::string g = words[i];
      for (size_t q = 1; q < k; ++q) g += ' ' + words[i + q];
      ++counts[k - 1][g];
    }
  }
  return counts;
}

size_t lcs(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<size_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

const std::vector<std::string>& metric_names() {
  static const std::vector<std::string> n = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"};
  return n;
}

const std::vector<std::string>& not_computed_metrics() {
  static const std::vector<std::string> n = {"METEOR", "SPICE"};
  return n;
}

CaptionScores score_tokenized(const std::map<std::string, std::vector<std::string>>& references,
                              const std::map<std::string, std::string>& candidates) {
  CaptionScores result;
  std::vector<std::string> ids;
  for (const auto& [id, refs] : references) {
    if (!candidates.count(id)) result.missing.push_back(id);
  }
  for (const auto& [id, cand] : candidates) {
    auto it = references.find(id);
    if (it == references.end() || it->second.empty()) result.unknown.push_back(id);
    else ids.push_back(id);
  }
  if (ids.empty()) throw InputError("no image has both references and a candidate caption: nothing to score");
  result.images_scored = ids.size();

  const double tiny = 1e-15, small = 1e-9;
  // ---- BLEU (bleu_scorer.py, option "closest")
  double testlen_total = 0, reflen_total = 0;
  std::array<double, 4> guess_total{}, correct_total{};
  // ---- CIDEr document frequencies over the references of the scored images
  std::map<Ngram, double> df;
  struct Cooked {
    std::array<Counts, 4> cand;
    std::vector<std::array<Counts, 4>> refs;
    std::vector<std::string> cand_words;
    std::vector<std::vector<std::string>> ref_words;
  };
  std::vector<Cooked> cooked(ids.size());
  for (size_t m = 0; m < ids.size(); ++m) {
    Cooked& ck = cooked[m];
    ck.cand_words = split_spaces(candidates.at(ids[m]));
    ck.cand = precook(ck.cand_words);
    std::set<Ngram> seen;
    for (const auto& r : references.at(ids[m])) {
      ck.ref_words.push_back(split_spaces(r));
      ck.refs.push_back(precook(ck.ref_words.back()));
      for (const auto& order : ck.refs.back())
        for (const auto& kv : order) seen.insert(kv.first);
    }
    for (const auto& g : seen) df[g] += 1;

    // BLEU per image: clipped counts against the max count over the references
    const size_t testlen = ck.cand_words.size();
    size_t reflen = 0, best_diff = SIZE_MAX;
    for (const auto& rw : ck.ref_words) {
      const size_t l = rw.size();
      const size_t diff = l > testlen ? l - testlen : testlen - l;
      if (diff < best_diff || (diff == best_diff && l < reflen)) { best_diff = diff; reflen = l; }
    }
    testlen_total += testlen;
    reflen_total += reflen;
    auto& img = result.per_image[ids[m]];
    for (size_t k = 0; k < 4; ++k) {
      const double guess = testlen >= k + 1 ? static_cast<double>(testlen - k) : 0.0;
      double correct = 0;
      for (const auto& [g, cnt] : ck.cand[k]) {
        int maxref = 0;
        for (const auto& r : ck.refs) {
          auto it = r[k].find(g);
          if (it != r[k].end()) maxref = std::max(maxref, it->second);
        }
        correct += std::min(maxref, cnt);
      }
      guess_total[k] += guess;
      correct_total[k] += correct;
      img["BLEU-" + std::to_string(k + 1)] = std::pow((correct + tiny) / (guess + small), 1.0 / (k + 1.0));
    }
    // ROUGE-L (rouge.py): max precision and max recall over the references, beta 1.2
    auto cand_r = ck.cand_words.empty() ? std::vector<std::string>{""} : ck.cand_words;  // "".split(" ") == ['']
    double prec_max = 0, rec_max = 0;
    for (const auto& rw0 : ck.ref_words) {
      auto rw = rw0.empty() ? std::vector<std::string>{""} : rw0;
      const double l = static_cast<double>(lcs(rw, cand_r));
      prec_max = std::max(prec_max, l / cand_r.size());
      rec_max = std::max(rec_max, l / rw.size());
    }
    const double beta = 1.2;
    img["ROUGE-L"] = (prec_max != 0 && rec_max != 0)
                         ? ((1 + beta * beta) * prec_max * rec_max) / (rec_max + beta * beta * prec_max)
                         : 0.0;
  }
  for (size_t nn = 1; nn <= 4; ++nn) {
    double bleu = 1.0;
    for (size_t k = 0; k < nn; ++k) bleu *= (correct_total[k] + tiny) / (guess_total[k] + small);
    bleu = std::pow(bleu, 1.0 / nn);
    const double ratio = (testlen_total + tiny) / (reflen_total + small);
    if (ratio < 1) bleu *= std::exp(1 - 1 / ratio);
    result.corpus["BLEU-" + std::to_string(nn)] = bleu;
  }

  // ---- CIDEr (cider_scorer.py: the official Cider class, sigma 6)
  const double ref_len = std::log(static_cast<double>(ids.size()));
  struct Vec {
    std::array<std::map<Ngram, double>, 4> v;
    std::array<double, 4> norm{};
    double length = 0;  // number of bigrams, as counts2vec counts it
  };
  auto counts2vec = [&](const std::array<Counts, 4>& cnts) {
    Vec out;
    for (size_t k = 0; k < 4; ++k) {
      for (const auto& [g, tf] : cnts[k]) {
        auto it = df.find(g);
        const double d = std::log(std::max(1.0, it == df.end() ? 0.0 : it->second));
        const double val = static_cast<double>(tf) * (ref_len - d);
        out.v[k][g] = val;
        out.norm[k] += val * val;
        if (k == 1) out.length += tf;
      }
      out.norm[k] = std::sqrt(out.norm[k]);
    }
    return out;
  };
  const double sigma = 6.0;
  double cider_sum = 0;
  for (size_t m = 0; m < ids.size(); ++m) {
    const Vec hyp = counts2vec(cooked[m].cand);
    std::array<double, 4> score{};
    for (const auto& r : cooked[m].refs) {
      const Vec ref = counts2vec(r);
      const double delta = hyp.length - ref.length;
      for (size_t k = 0; k < 4; ++k) {
        double val = 0;
        for (const auto& [g, vh] : hyp.v[k]) {
          auto it = ref.v[k].find(g);
          const double vr = it == ref.v[k].end() ? 0.0 : it->second;
          val += std::min(vh, vr) * vr;
        }
        if (hyp.norm[k] != 0 && ref.norm[k] != 0) val /= hyp.norm[k] * ref.norm[k];
        val *= std::exp(-(delta * delta) / (2 * sigma * sigma));
        score[k] += val;
      }
    }
    double avg = (score[0] + score[1] + score[2] + score[3]) / 4.0;
    avg /= static_cast<double>(cooked[m].refs.size());
    avg *= 10.0;
    result.per_image[ids[m]]["CIDEr"] = avg;
    cider_sum += avg;
  }
  result.corpus["CIDEr"] = cider_sum / ids.size();
  double rouge_sum = 0;
  for (const auto& id : ids) rouge_sum += result.per_image[id]["ROUGE-L"];
  result.corpus["ROUGE-L"] = rouge_sum / ids.size();
  return result;
}

CaptionScores score_captions(const std::map<std::string, std::vector<std::string>>& references,
                             const std::map<std::string, std::string>& candidates) {
  auto join = [](const std::vector<std::string>& toks) {
    std::string s;
    for (size_t i = 0; i < toks.size(); ++i) s += (i ? " " : "") + toks[i];
    return s;
  };
  std::map<std::string, std::vector<std::string>> refs;
  for (const auto& [id, caps] : references) {
    auto& v = refs[id];
    for (const auto& c : caps) v.push_back(join(ptb_tokenize(c)));
  }
  std::map<std::string, std::string> cands;
  for (const auto& [id, c] : candidates) cands[id] = join(ptb_tokenize(c));
  return score_tokenized(refs, cands);
}

}  // namespace satcap
