// Caption metrics equivalent to the official COCO caption evaluation (pycocoevalcap, COCOEvalCap):
// BLEU-1..4, ROUGE-L and CIDEr (the official Cider class, CIDEr-D style), on captions tokenised
// as COCOEvalCap tokenises them (ptb_tokenize(), ptb_tokenizer.h).
// METEOR and SPICE need Java programs and are not computed (see not_computed_metrics()).
// No torch here: plain C++.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace satcap {

// Scores of one evaluation. Metric keys: "BLEU-1".."BLEU-4", "ROUGE-L", "CIDEr" (0-1 scale, CIDEr 0-10).
struct CaptionScores {
  std::map<std::string, double> corpus;  // the numbers COCOEvalCap prints (its eval dict)
  // Per image (keyed by image id): ROUGE-L and CIDEr as the official imgToEval; "BLEU-n" is the
  // per-image value of the official bleu_list: ((clipped n-gram matches + 1e-15) /
  // (candidate n-grams + 1e-9)) ^ (1/n), with no brevity penalty (see README, "Metrics").
  std::map<std::string, std::map<std::string, double>> per_image;
  std::vector<std::string> missing;  // images with references but no candidate (not scored)
  std::vector<std::string> unknown;  // candidates for images with no references (not scored)
  size_t images_scored = 0;
};

// Scores the candidates of the images present in both maps (image id -> raw captions). Tokenises
// everything with ptb_tokenize(). Document frequencies for CIDEr come from the references of
// the scored images only, as in the official code. Throws InputError if no image can be scored.
CaptionScores score_captions(const std::map<std::string, std::vector<std::string>>& references,
                             const std::map<std::string, std::string>& candidates);

// Same on captions already tokenised (tokens separated by single spaces, as the official scorers
// receive them): no tokenisation is applied.
CaptionScores score_tokenized(const std::map<std::string, std::vector<std::string>>& references,
                              const std::map<std::string, std::string>& candidates);

// The metric keys in report order, and the official metrics not computed here.
const std::vector<std::string>& metric_names();
const std::vector<std::string>& not_computed_metrics();

}  // namespace satcap
