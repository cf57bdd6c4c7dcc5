// The tokenizer of the official COCO caption evaluation (pycocoevalcap's ptbtokenizer.py, which
// runs Stanford PTBTokenizer), emulated in C++: captions become the lowercased tokens the scorers in
// metrics.h compare. No torch here: plain C++.
#pragma once

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

}  // namespace satcap
