// Caption metrics equivalent to the official COCO caption evaluation (pycocoevalcap, COCOEvalCap):
// BLEU-1..4, ROUGE-L and CIDEr (the official Cider class, CIDEr-D style), on captions tokenised
// as COCOEvalCap tokenises them (Stanford PTBTokenizer, lowercased, punctuation tokens dropped).
// METEOR and SPICE need Java programs and are not computed (see not_computed_metrics()).
// No torch here: plain C++.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace satcap {

// COCOEvalCap's tokenisation of one caption: an emulation of Stanford PTBTokenizer 3.4.1 run with
// -preserveLines -lowerCase (default ptb3Escaping options: Americanize, -LRB-, `` '', "\/", ...),
// followed by the removal of the tokens in ptbtokenizer.py's PUNCTUATIONS list
// ('' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;).
// Emulated: punctuation split off words; clitics split as PTB does ("dog's" -> dog 's,
// "don't" -> do n't, "can't" -> ca n't, "cannot" -> can not, 're 've 'll 'm 'd; "gonna" -> gon na,
// "wanna" -> wan na, "gimme" -> gim me); soft hyphens removed inside words; hyphenated and
// alphanumeric words kept whole ("black-and-white", "t-shirt", "2nd"); numbers "3.5" "1,000";
// abbreviations and acronyms keep their period ("st.", "u.s.", a single letter + "." too);
// brackets become -LRB- -RRB- -LCB- -RCB- and, lowercased by -lowerCase before the case-sensitive
// PUNCTUATIONS filter, stay in the output as "-lrb-" "-rrb-" "-lcb-" "-rcb-" (as in the official code);
// "a/b" -> "a\/b", "/" -> "\/", "*" -> "\*"; runs of ?/! kept whole ("?!" is not dropped);
// "US$", "AT&T", "#tag", "@name" and SGML tags ("<p>") are single tokens; "|" and "\" are tokens;
// British spellings rewritten by Stanford's Americanize list ("grey" -> "gray", "colour" -> "color").
// Known differences from the Java tokenizer (rare in captions): URLs, e-mail addresses, phone
// numbers, "5 7/8"-style fractions, SGML/HTML entities, acronyms before capitalised function words,
// apostrophe words of the APOWORD class other than 'n' 'em 'till 'cause '90s o'/d'/l' (e.g. "Shi'ite"
// splits), and lowercasing/letter classes beyond Latin-1, Latin Extended-A, Greek and Cyrillic.
// Checked against PTBTokenizerTest's gold and the PTBLexer.flex rules of the CoreNLP 3.x era (see
// tests/test_ptb_tokenizer.cpp, which also lists what those sources leave open: < > [ ], emoticons).
std::vector<std::string> ptb_tokenize(const std::string& caption);

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
