// ptb_tokenize() against what the official COCO caption evaluation gets from Stanford PTBTokenizer
// (`java -cp stanford-corenlp-3.4.1.jar edu.stanford.nlp.process.PTBTokenizer -preserveLines
// -lowerCase`, then pycocoevalcap's PUNCTUATIONS filter). No Java here, so the expected outputs are
// worked out by hand from two stored public sources, lowercased, with the PUNCTUATIONS tokens
// ('' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;) removed; "-lrb-" and friends stay because
// the filter is case-sensitive and runs after -lowerCase:
//  [T] stanfordnlp/CoreNLP test/src/edu/stanford/nlp/process/PTBTokenizerTest.java, the JUnit3
//      (`extends TestCase`) versions stored in the code index (the later one, 13,101 characters, has
//      the SGML and tiotropium cases; the earlier one, 7,587, already has "Gim me" / "gon na"). The
//      index does not say at which commit; they predate the JUnit4 rewrite and the 4.0 defaults.
//      Their gold uses the default options (ptb3Escaping), as the command line does: PTBTokenizer.main
//      passes "" + ",tokenizeNLs" for -preserveLines and lowercases each token with
//      toLowerCase(Locale.ENGLISH) after lexing (so Americanize sees the original case).
//  [F] the PTBLexer.flex rules of that era (PeterisP/LVTagger, a CoreNLP copy, commit 58065f68):
//      REDAUX/SREDAUX, HYPHENS, NUMBER, FRAC, THING3, ACRONYM, QUOTES, LDOTS, MISCSYMBOL, TWITTER...
// Cases whose 3.4.1 output the sources leave open are listed at the end and not asserted.
#include "testing.h"

#include <string>
#include <utility>
#include <vector>

#include "satcap/eval/ptb_tokenizer.h"

using satcap::ptb_tokenize;

namespace {
std::string tokens(const std::string& caption) {
  std::string s;
  for (const auto& t : ptb_tokenize(caption)) s += (s.empty() ? "" : " ") + t;
  return s;
}

struct Case {
  const char* source;  // [T] test gold or [F] lexer rule it follows from
  std::string input;
  std::string expected;
};

// Inputs of [T] are its sentences with "\n" written as a space (ptbtokenizer.py does
// caption.replace('\n', ' ') before writing one caption per line).
const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      // ---- [T] gold, lowercased and filtered
      {"T", "This is a sentence.", "this is a sentence"},
      {"T", "U.S. insurance: Conseco acquires Kemper Corp. \n</HEADLINE>\n<P>\nU.S insurance",
       "u.s. insurance conseco acquires kemper corp. </headline> <p> u.s insurance"},
      {"T",
       "Based in Eugene,Ore., PakTech needs a new distributor after Sydney-based Creative Pack Pty. Ltd. went "
       "into voluntary administration.",
       "based in eugene ore. paktech needs a new distributor after sydney-based creative pack pty. ltd. went "
       "into voluntary administration"},
      {"T", "The Iron Age (ca. 1300 \xE2\x80\x93 ca. 300 BC).", "the iron age -lrb- ca. 1300 ca. 300 bc -rrb-"},
      {"T", "Indo\xC2\xADnesian ship\xC2\xADping \xC2\xAD", "indonesian shipping"},  // soft hyphens; a lone one is "-"
      {"T", "Gimme a phone, I'm gonna call.", "gim me a phone i 'm gon na call"},
      {"T", "\"John & Mary's dog,\" Jane thought (to herself).\n\"What a #$%!\na- ``I like AT&T''.\"",
       "john & mary 's dog jane thought -lrb- to herself -rrb- what a # $ % a i like at&t"},
      {"T", "I said at 4:45pm.", "i said at 4:45 pm"},
      {"T", "I can't believe they wanna keep 40% of that.\"\n``Whatcha think?''\n\"I don't --- think so...,\"",
       "i ca n't believe they wan na keep 40 % of that whatcha think i do n't think so"},
      {"T", "You `paid' US$170,000?!\nYou should've paid only$16.75.",
       "you paid us$ 170,000 ?! you should 've paid only $ 16.75"},
      {"T", "1. Buy a new Chevrolet (37%-owned in the U.S..) . 15%",
       "1 buy a new chevrolet -lrb- 37 % owned in the u.s. -rrb- 15 %"},
      {"T", "Diamond (``Not even the chair'') lives near Udaipur (84km). {1. A potential Palmer trade:}",
       "diamond -lrb- not even the chair -rrb- lives near udaipur -lrb- 84km -rrb- -lcb- 1 a potential palmer "
       "trade -rcb-"},
      {"T", "So, too, many analysts predict, will Exxon Corp., Chevron Corp. and Amoco Corp.",
       "so too many analysts predict will exxon corp. chevron corp. and amoco corp."},
      {"T", "it's", "it 's"},
      {"T", " it's ", "it 's"},
      {"T", "Panasonic brand products are produced by Samsung Electronics Co. Ltd. Sanyo products aren't.",
       "panasonic brand products are produced by samsung electronics co. ltd. sanyo products are n't"},
      {"T", "  This     is     a      colourful sentence.    ", "this is a colorful sentence"},
      {"T", "demonstrated with tiotropium/olodaterol 5/2 \xCE\xBCg (p = 0.008), 5/5 \xCE\xBCg",
       "demonstrated with tiotropium\\/olodaterol 5\\/2 \xCE\xBCg -lrb- p = 0.008 -rrb- 5\\/5 \xCE\xBCg"},
      // ---- [F] contractions (REDAUX, SWORD/SREDAUX, cannot)
      {"F", "A man's hat isn't on; they're sure we'll go, I'd say",
       "a man 's hat is n't on they 're sure we 'll go i 'd say"},
      {"F", "Two dogs won't play and can't stop", "two dogs wo n't play and ca n't stop"},
      {"F", "It cannot fly", "it can not fly"},
      {"F", "I'M SURE THEY'VE GONE", "i 'm sure they 've gone"},
      {"F", "rock 'n' roll at 5 o'clock", "rock 'n' roll at 5 o'clock"},
      // ---- [F] hyphens and dashes (HYPHENS: 3 or 4 hyphens become "--"; SPMDASH: en/em dash "--")
      {"F", "a well-known t-shirt", "a well-known t-shirt"},
      {"F", "a man - standing -- near --- a car ---- now", "a man standing near a car now"},
      {"F", "a dog\xE2\x80\x94running \xE2\x80\x93 fast", "a dog running fast"},
      {"F", "a 3-4 year old", "a 3-4 year old"},
      // ---- [F] numbers (NUMBER, FRAC, DATE)
      {"F", "1,000 people, 3.5 inches at 10:30 am", "1,000 people 3.5 inches at 10:30 am"},
      {"F", "50% off $5 on a 2nd try", "50 % off $ 5 on a 2nd try"},
      {"F", "-5 degrees on 12/25/2014 with 1/2 cup", "-5 degrees on 12\\/25\\/2014 with 1\\/2 cup"},
      // ---- [F] abbreviations and acronyms (ABBREV1/2, ACRONYM)
      {"F", "Dr. Smith and Mr. Jones on St. Patrick's day", "dr. smith and mr. jones on st. patrick 's day"},
      {"F", "a U.S. flag at 9 a.m. today, etc.", "a u.s. flag at 9 a.m. today etc."},
      // ---- [F] quotes of all kinds (QUOTES, DBLQUOT, '/[A-Za-z][^ ], latexQuotes)
      {"F", "a \"stop\" sign, a 'stop' sign, a ``stop'' sign", "a stop sign a stop sign a stop sign"},
      {"F", "a \xE2\x80\x9Cstop\xE2\x80\x9D sign and the \xE2\x80\x98" "big\xE2\x80\x99 dog", "a stop sign and the big dog"},
      {"F", "the dog\xE2\x80\x99s bone", "the dog 's bone"},
      // ---- [F] brackets (normalizeParentheses, normalizeOtherBrackets for braces)
      {"F", "a (red) car {x}", "a -lrb- red -rrb- car -lcb- x -rcb-"},
      // ---- [F] ellipsis (LDOTS), ?! runs ([?!]+ is one token, not in PUNCTUATIONS)
      {"F", "a dog... running . . . now", "a dog running now"},
      {"F", "Is it?! Wow!!", "is it ?! wow !!"},
      // ---- [F] slashes, ampersand, #, @ (THING3, "\/", MISCSYMBOL, TWITTER)
      {"F", "a black/white cat / dog", "a black\\/white cat \\/ dog"},
      {"F", "salt & pepper", "salt & pepper"},
      {"F", "#beach with @john_1 and # 5", "#beach with @john_1 and # 5"},
      {"F", "a | b \\ c", "a | b \\ c"},
      // ---- [F] non-ASCII letters and spaces (WORD is [:letter:], SPACE has U+00A0)
      {"F", "caf\xC3\xA9 cr\xC3\xA8me by \xC3\x89mile", "caf\xC3\xA9 cr\xC3\xA8me by \xC3\xA9mile"},
      {"F", "a\xC2\xA0" "dog", "a dog"},
      // ---- [F] line structure: ptbtokenizer.py turns "\n" into a space; tabs are SPACE
      {"F", "a dog\nrunning\tfast", "a dog running fast"},
  };
  return c;
}
}  // namespace

TEST_CASE("ptb_tokenize matches the PTBTokenizer gold of the CoreNLP 3.x era after the COCO filter", "[metrics]") {
  for (const auto& c : cases()) {
    INFO("[" << c.source << "] input: " << c.input);
    CHECK(tokens(c.input) == c.expected);
  }
}

// Not asserted: outputs that changed between the CoreNLP versions we can read, so that what 3.4.1
// printed is not established here.
//  - "<" and ">": [F] maps them to -LRB- / -RRB-; the later [T] keeps "<" (p < 0.0001 -> "<").
//  - "[" and "]": [F] -LRB- / -RRB-; the later [T] -LSB- / -RSB- (both survive the filter, lowercased).
//  - emoticons: the later [T] has ";-)" -> ";--RRB-", ":(" -> ":-LRB-", "^_^", "(x.x)" -> "-LRB-x.x-RRB-";
//    [F] has no emoticon rule.
//  - "No. I like No. 24": the later [T] gives "No" "." ... "No." "24"; [F] keeps "No." before a capital.
//  - "gotta", "lemme", "'tis", "'twas": split or not; [T] only shows gimme, gonna, wanna.
