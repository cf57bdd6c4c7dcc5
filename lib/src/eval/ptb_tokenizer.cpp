// Caption tokenisation as the official COCO caption evaluation does it (see ptb_tokenizer.h): an
// emulation of Stanford PTBTokenizer written from pycocoevalcap's tokenizer/ptbtokenizer.py and
// CoreNLP 3.x's PTBLexer.flex and Americanize.java. Captions are decoded from UTF-8 to code points,
// split into tokens by ptb_lex() (longest match, ties to the earlier PTBLexer rule), lowercased,
// re-encoded, and the tokens of ptbtokenizer.py's PUNCTUATIONS list are dropped.
#include "satcap/eval/ptb_tokenizer.h"

#include <algorithm>
#include <set>
#include <unordered_map>

namespace satcap {
namespace {

// ---------------------------------------------------------------- UTF-8
std::u32string decode_utf8(const std::string& s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    int extra = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (extra < 0 || i + extra >= s.size()) {
      out.push_back(0xFFFD);  // invalid byte: an untokenizable character (deleted below)
      ++i;
      continue;
    }
    char32_t cp = extra == 0 ? c : (c & (0x3F >> extra));
    bool ok = true;
    for (int k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 2) { ok = false; break; }
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) { out.push_back(0xFFFD); ++i; continue; }
    out.push_back(cp);
    i += extra + 1;
  }
  return out;
}

std::string encode_utf8(const std::u32string& s) {
  std::string out;
  for (char32_t cp : s) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

// ---------------------------------------------------------------- character classes (PTBLexer)
bool ascii_letter(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool digit(char32_t c) { return c >= '0' && c <= '9'; }
bool letter(char32_t c) {  // Java [:letter:], approximated outside ASCII
  if (c < 0x80) return ascii_letter(c);
  if (c == 0xAA || c == 0xB5 || c == 0xBA) return true;
  if (c < 0xC0) return false;
  if (c == 0xD7 || c == 0xF7) return false;
  if (c == 0xFFFD) return false;
  if (c >= 0x2000 && c <= 0x2BFF) return false;  // punctuation, symbols, arrows, maths
  if (c >= 0x3000 && c <= 0x303F) return false;  // CJK punctuation
  if (c >= 0xFE30 && c <= 0xFE4F) return false;
  if ((c >= 0xFF00 && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF40) || (c >= 0xFF5B && c <= 0xFF65)) return false;
  if (c >= 0xE000 && c <= 0xF8FF) return false;  // private use
  if (c >= 0x2B0 && c <= 0x36F) return false;    // modifiers, combining marks (PTB: in WORD, rare)
  return true;
}
bool alnum(char32_t c) { return letter(c) || digit(c); }
bool word_char(char32_t c) { return letter(c) || c == 0xAD; }  // WORD also takes the soft hyphen U+00AD
bool apos(char32_t c) { return c == '\'' || c == 0x92 || c == 0x2019; }                       // {APOS}
bool apos_etc(char32_t c) { return apos(c) || c == 0x91 || c == 0x2018 || c == 0x201B; }     // {APOSETCETERA}
bool hyphen(char32_t c) { return c == '-' || c == '_' || c == 0x58A || c == 0x2010 || c == 0x2011; }
bool space(char32_t c) { return c == ' ' || c == '\t' || c == 0xA0 || (c >= 0x2000 && c <= 0x200A) || c == 0x3000; }
bool newline(char32_t c) { return c == '\r' || c == '\n' || c == 0x2028 || c == 0x2029 || c == 0x0B || c == 0x0C || c == 0x85; }
bool vowel_any_case(char32_t c) { return std::string("aeiouyAEIOUY").find(static_cast<char>(c)) != std::string::npos && c < 0x80; }
char32_t lower(char32_t c) {  // Java toLowerCase for the scripts captions use
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17F) {
    const bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (odd_upper) return (c % 2 == 1) ? c + 1 : c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}
bool ieq(const std::u32string& t, size_t i, const char* lit) {  // caseless literal match at i
  for (size_t k = 0; lit[k]; ++k) {
    if (i + k >= t.size() || t[i + k] >= 0x80 || lower(t[i + k]) != static_cast<char32_t>(lit[k])) return false;
  }
  return true;
}

// ---------------------------------------------------------------- Americanize (CoreNLP 3.x)
const std::unordered_map<std::string, std::string>& american_words() {
  static const std::unordered_map<std::string, std::string> m = [] {
    const char* pairs[][2] = {
        {"anaesthetic", "anesthetic"}, {"analogue", "analog"}, {"analogues", "analogs"}, {"analyse", "analyze"},
        {"analysed", "analyzed"}, {"analysing", "analyzing"}, {"armoured", "armored"}, {"cancelled", "canceled"},
        {"cancelling", "canceling"}, {"candour", "candor"}, {"capitalise", "capitalize"},
        {"capitalised", "capitalized"}, {"capitalisation", "capitalization"}, {"centre", "center"},
        {"chimaeric", "chimeric"}, {"clamour", "clamor"}, {"coloured", "colored"}, {"colouring", "coloring"},
        {"colourful", "colorful"}, {"defence", "defense"}, {"Defence", "Defense"}, {"discolour", "discolor"},
        {"discolours", "discolors"}, {"discoloured", "discolored"}, {"discolouring", "discoloring"},
        {"encyclopaedia", "encyclopedia"}, {"endeavour", "endeavor"}, {"endeavours", "endeavors"},
        {"endeavoured", "endeavored"}, {"endeavouring", "endeavoring"}, {"fervour", "fervor"}, {"favour", "favor"},
        {"favours", "favors"}, {"favoured", "favored"}, {"favouring", "favoring"}, {"favourite", "favorite"},
        {"favourites", "favorites"}, {"fibre", "fiber"}, {"fibres", "fibers"}, {"finalise", "finalize"},
        {"finalised", "finalized"}, {"finalising", "finalizing"}, {"flavour", "flavor"}, {"flavours", "flavors"},
        {"flavoured", "flavored"}, {"flavouring", "flavoring"}, {"glamour", "glamour"}, {"grey", "gray"},
        {"harbour", "harbor"}, {"harbours", "harbors"}, {"homologue", "homolog"}, {"homologues", "homologs"},
        {"honour", "honor"}, {"honours", "honors"}, {"honoured", "honored"}, {"honouring", "honoring"},
        {"honourable", "honorable"}, {"humour", "humor"}, {"humours", "humors"}, {"humoured", "humored"},
        {"humouring", "humoring"}, {"kerb", "curb"}, {"labelled", "labeled"}, {"labelling", "labeling"},
        {"labour", "labor"}, {"Labour", "Labor"}, {"labours", "labors"}, {"laboured", "labored"},
        {"labouring", "laboring"}, {"leant", "leaned"}, {"learnt", "learned"}, {"localise", "localize"},
        {"localised", "localized"}, {"manoeuvre", "maneuver"}, {"manoeuvres", "maneuvers"},
        {"maximise", "maximize"}, {"maximised", "maximized"}, {"maximising", "maximizing"}, {"meagre", "meager"},
        {"minimise", "minimize"}, {"minimised", "minimized"}, {"minimising", "minimizing"},
        {"modernise", "modernize"}, {"modernised", "modernized"}, {"modernising", "modernizing"},
        {"misdemeanour", "misdemeanor"}, {"misdemeanours", "misdemeanors"}, {"neighbour", "neighbor"},
        {"neighbours", "neighbors"}, {"neighbourhood", "neighborhood"}, {"neighbourhoods", "neighborhoods"},
        {"oestrogen", "estrogen"}, {"oestrogens", "estrogens"}, {"organisation", "organization"},
        {"organisations", "organizations"}, {"penalise", "penalize"}, {"penalised", "penalized"},
        {"popularise", "popularize"}, {"popularised", "popularized"}, {"popularises", "popularizes"},
        {"popularising", "popularizing"}, {"practise", "practice"}, {"practised", "practiced"},
        {"pressurise", "pressurize"}, {"pressurised", "pressurized"}, {"pressurises", "pressurizes"},
        {"pressurising", "pressurizing"}, {"realise", "realize"}, {"realised", "realized"},
        {"realising", "realizing"}, {"realises", "realizes"}, {"recognise", "recognize"},
        {"recognised", "recognized"}, {"recognising", "recognizing"}, {"recognises", "recognizes"},
        {"rumoured", "rumored"}, {"rumouring", "rumoring"}, {"savour", "savor"}, {"savours", "savors"},
        {"savoured", "savored"}, {"savouring", "savoring"}, {"splendour", "splendor"},
        {"splendours", "splendors"}, {"theatre", "theater"}, {"theatres", "theaters"}, {"titre", "titer"},
        {"titres", "titers"}, {"travelled", "traveled"}, {"travelling", "traveling"}};
    std::unordered_map<std::string, std::string> r;
    for (const auto& p : pairs) r.emplace(p[0], p[1]);
    return r;
  }();
  return m;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

// Americanize.americanize(word): the exact-word table, then the first matching pattern of
// haem(at)?o, aemia$, ([lL]euk)aem, programme(s?)$, ^([a-z]{3,})our(s?)$ (with its exceptions).
std::string americanize(const std::string& w) {
  const auto& m = american_words();
  if (auto it = m.find(w); it != m.end()) return it->second;
  if (w.find("haemo") != std::string::npos || w.find("haemato") != std::string::npos) {
    return replace_all(replace_all(w, "haemato", "hemato"), "haemo", "hemo");
  }
  if (ends_with(w, "aemia")) return w.substr(0, w.size() - 5) + "emia";
  if (w.find("leukaem") != std::string::npos || w.find("Leukaem") != std::string::npos) {
    return replace_all(replace_all(w, "leukaem", "leukem"), "Leukaem", "Leukem");
  }
  if (ends_with(w, "programme")) return w.substr(0, w.size() - 9) + "program";
  if (ends_with(w, "programmes")) return w.substr(0, w.size() - 10) + "programs";
  static const char* our_exceptions[] = {"abatjour", "beflour", "bonjour", "calambour", "carrefour", "cornflour",
                                         "contour", "detour", "devour", "dortour", "dyvour", "downpour", "giaour",
                                         "glamour", "holour", "inpour", "outpour", "pandour", "paramour",
                                         "pompadour", "recontour", "repour", "ryeflour", "sompnour", "tambour",
                                         "troubadour", "tregetour", "velour"};
  for (const char* e : our_exceptions) {
    if (w.find(e) != std::string::npos) return w;
  }
  const bool plural = ends_with(w, "ours");
  const size_t stem = w.size() - (plural ? 4 : 3);
  if ((plural || ends_with(w, "our")) && w.size() >= (plural ? 7u : 6u) &&
      std::all_of(w.begin(), w.begin() + stem, [](char c) { return c >= 'a' && c <= 'z'; })) {
    return w.substr(0, stem) + "or" + (plural ? "s" : "");
  }
  return w;
}

// ---------------------------------------------------------------- the lexer
// Abbreviations of PTBLexer's ABBREV1 / ABBREV2 classes (caseless unless noted) that keep their period.
bool is_abbreviation(const std::u32string& t, size_t i, size_t n) {
  std::string w, lw;
  for (size_t k = i; k < i + n; ++k) {
    if (t[k] >= 0x80) return false;
    w.push_back(static_cast<char>(t[k]));
    lw.push_back(static_cast<char>(lower(t[k])));
  }
  if (n == 1) return true;  // ABBREV4: [A-Za-z]
  static const std::set<std::string> caseless = {
      // ABMONTH ABDAYS
      "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "tues",
      "wed", "thu", "thurs", "fri",
      // "ca." (circa): kept whole in PTBTokenizerTest's gold ("-LRB- ca. 1300 -- ca. 300 BC -RRB-")
      "ca",
      // ABSTATE (the caseless ones)
      "ala", "ariz", "calif", "colo", "conn", "dak", "del", "fla", "ga", "ind", "kan", "kans", "ky", "la", "md",
      "mich", "minn", "mo", "mont", "neb", "nev", "okla", "pa", "penn", "tenn", "tex", "va", "vt", "wis", "wisc",
      "wyo",
      // ABCOMP ABNUM ABPTIT etc al seq
      "inc", "co", "cos", "corp", "pty", "ptys", "pp", "ppty", "pptys", "ltd", "plc", "bancorp", "dept", "bhd",
      "assn", "univ", "intl", "sys", "no", "nos", "prop", "ph", "tel", "est", "ext", "sq", "ft", "jr", "sr", "bros",
      "blvd", "rd", "esq", "etc", "al", "seq",
      // ABBREV4: ABTITLE (caseless ones), vs, Alex ... , ABCOMP2
      "mr", "mrs", "ms", "dr", "drs", "prof", "profs", "sen", "sens", "rep", "reps", "atty", "attys", "lt", "col",
      "gen", "messrs", "gov", "govs", "adm", "rev", "maj", "sgt", "cpl", "pvt", "mt", "capt", "st", "ste", "ave",
      "pres", "lieut", "hon", "brig", "cmdr", "comdr", "pfc", "spc", "supt", "supts", "det", "vs", "alex", "wm",
      "jos", "cie", "cf", "treas", "invt", "elec", "natl", "mfg", "mtg"};
  static const std::set<std::string> capitalised = {"Ark", "Ill", "Mass", "Miss", "Ore", "Wash"};  // [A]rk ...
  if (caseless.count(lw)) return true;
  if (!w.empty() && w[0] >= 'A' && w[0] <= 'Z') {
    std::string cap = lw;
    cap[0] = w[0];
    if (capitalised.count(cap)) return true;
  }
  return false;
}

// Length of ACRO = [A-Za-z](\.[A-Za-z])+ at i (0 if none).
size_t acro_length(const std::u32string& t, size_t i) {
  if (i >= t.size() || !ascii_letter(t[i])) return 0;
  size_t j = i + 1, groups = 0;
  while (j + 1 < t.size() && t[j] == '.' && ascii_letter(t[j + 1])) { j += 2; ++groups; }
  return groups ? j - i : 0;
}

// THING = ([dDoOlL]{APOSETCETERA}alnum)? alnum+ ({HYPHEN} ([dDoOlL]{APOSETCETERA}alnum)? alnum+)*
size_t thing_length(const std::u32string& t, size_t i) {
  auto segment = [&](size_t p) -> size_t {
    size_t q = p;
    if (q + 2 < t.size() && std::u32string(U"dDoOlL").find(t[q]) != std::u32string::npos && apos_etc(t[q + 1]) &&
        alnum(t[q + 2])) {
      q += 3;
    }
    while (q < t.size() && alnum(t[q])) ++q;
    return q - p;
  };
  size_t n = segment(i);
  if (!n) return 0;
  size_t j = i + n;
  while (j + 1 < t.size() && hyphen(t[j])) {
    const size_t s = segment(j + 1);
    if (!s) break;
    j += 1 + s;
  }
  return j - i;
}

// HTHING = [A-Za-z0-9][A-Za-z0-9.,]*(-([A-Za-z0-9]+|{ACRO}\.))+
size_t hthing_length(const std::u32string& t, size_t i) {
  auto an = [](char32_t c) { return ascii_letter(c) || digit(c); };
  if (i >= t.size() || !an(t[i])) return 0;
  size_t j = i + 1;
  while (j < t.size() && (an(t[j]) || t[j] == '.' || t[j] == ',')) ++j;
  size_t groups = 0;
  while (j + 1 < t.size() && t[j] == '-') {
    size_t a = acro_length(t, j + 1);
    size_t k = j + 1;
    while (k < t.size() && an(t[k])) ++k;
    size_t plain = k - (j + 1);
    size_t with_acro = (a && j + 1 + a < t.size() && t[j + 1 + a] == '.') ? a + 1 : 0;
    size_t best = std::max(plain, with_acro);
    if (!best) break;
    j += 1 + best;
    ++groups;
  }
  return groups ? j - i : 0;
}

// THING3 = [A-Za-z0-9]+(-[A-Za-z]+){0,2}(\\?\/[A-Za-z0-9]+(-[A-Za-z]+){0,2}){1,2}
size_t thing3_length(const std::u32string& t, size_t i) {
  auto an = [](char32_t c) { return ascii_letter(c) || digit(c); };
  auto part = [&](size_t p) -> size_t {
    size_t q = p;
    while (q < t.size() && an(t[q])) ++q;
    if (q == p) return 0;
    for (int h = 0; h < 2; ++h) {
      size_t r = q + 1;
      if (q < t.size() && t[q] == '-' && r < t.size() && ascii_letter(t[r])) {
        while (r < t.size() && ascii_letter(t[r])) ++r;
        q = r;
      } else {
        break;
      }
    }
    return q - p;
  };
  size_t n = part(i);
  if (!n) return 0;
  size_t j = i + n;
  int slashes = 0;
  while (slashes < 2) {
    size_t s = j;
    if (s < t.size() && t[s] == '\\') ++s;
    if (s >= t.size() || t[s] != '/') break;
    const size_t m = part(s + 1);
    if (!m) break;
    j = s + 1 + m;
    ++slashes;
  }
  return slashes ? j - i : 0;
}

// NUMBER = [-+]?({DIGIT}+|{DIGIT}*([.:,]{DIGIT}+)+)
size_t number_length(const std::u32string& t, size_t i) {
  size_t j = i;
  if (j < t.size() && (t[j] == '-' || t[j] == '+')) ++j;
  const size_t body = j;
  while (j < t.size() && digit(t[j])) ++j;
  while (j + 1 < t.size() && (t[j] == '.' || t[j] == ':' || t[j] == ',') && digit(t[j + 1])) {
    j += 1;
    while (j < t.size() && digit(t[j])) ++j;
  }
  return j > body ? j - i : 0;
}

// FRAC = {DIGIT}{1,4}(-{DIGIT}{1,4})?... simplified to ({DIGIT}{1,4}-)?{DIGIT}{1,4}\\?/{DIGIT}{1,4};
// DATE = {DIGIT}{1,2}[-/]{DIGIT}{1,2}[-/]{DIGIT}{2,4}
size_t frac_or_date_length(const std::u32string& t, size_t i) {
  auto digits = [&](size_t p, size_t lo, size_t hi) -> size_t {
    size_t q = p;
    while (q < t.size() && digit(t[q]) && q - p < hi) ++q;
    return (q - p >= lo) ? q - p : 0;
  };
  size_t best = 0;
  // DATE
  if (size_t a = digits(i, 1, 2)) {
    size_t j = i + a;
    if (j < t.size() && (t[j] == '-' || t[j] == '/')) {
      if (size_t b = digits(j + 1, 1, 2)) {
        size_t k = j + 1 + b;
        if (k < t.size() && (t[k] == '-' || t[k] == '/')) {
          if (size_t c = digits(k + 1, 2, 4)) best = std::max(best, k + 1 + c - i);
        }
      }
    }
  }
  // FRAC
  for (int with_whole = 0; with_whole < 2; ++with_whole) {
    size_t j = i;
    if (with_whole) {
      size_t w = digits(j, 1, 4);
      if (!w || j + w >= t.size() || t[j + w] != '-') continue;
      j += w + 1;
    }
    size_t a = digits(j, 1, 4);
    if (!a) continue;
    j += a;
    if (j < t.size() && t[j] == '\\') ++j;
    if (j >= t.size() || (t[j] != '/' && t[j] != 0x2044)) continue;
    size_t b = digits(j + 1, 1, 4);
    if (b) best = std::max(best, j + 1 + b - i);
  }
  return best;
}

// Length of REDAUX = {APOS}([msdMSD]|re|ve|ll) at i (0 if none).
size_t redaux_length(const std::u32string& t, size_t i) {
  if (i >= t.size() || !apos(t[i])) return 0;
  if (ieq(t, i + 1, "re") || ieq(t, i + 1, "ve") || ieq(t, i + 1, "ll")) return 3;
  if (ieq(t, i + 1, "m") || ieq(t, i + 1, "s") || ieq(t, i + 1, "d")) return 2;
  return 0;
}

// latexQuotes(tok, probablyLeft=false) for quote-like tokens that are kept ('s, n't).
std::u32string latex_quote_right(std::u32string s) {
  for (auto& c : s) {
    if (c == 0x92 || c == 0x2019 || c == 0x203A) c = '\'';
    else if (c == 0x91 || c == 0x2018 || c == 0x201B || c == 0x2039) c = '`';
  }
  return s;
}

std::u32string escape_slash(const std::u32string& s, char32_t ch) {  // PTBLexer.delimit
  std::u32string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == ch && (i == 0 || s[i - 1] != '\\')) out.push_back('\\');
    out.push_back(s[i]);
  }
  return out;
}

struct Candidate {
  size_t length = 0;  // matched length including trailing context (JFlex longest match)
  int rank = 1000;    // rule order in PTBLexer.flex (earlier wins a tie)
  size_t consume = 0; // characters the token takes
  int kind = 0;
};

enum Kind { kSredaux = 50, kCannot = 1, kWordRedaux, kSwordSredaux, kWord, kApoword, kNumber, kFrac, kThing3, kAbbrev, kAcro,
            kWordDotInsentp, kHthing, kThing, kDolsign, kThinga, kSgml };

void offer(Candidate& best, size_t length, int rank, size_t consume, int kind) {
  if (length == 0) return;
  if (length > best.length || (length == best.length && rank < best.rank)) best = {length, rank, consume, kind};
}

bool insentp(char32_t c) { return c == ',' || c == ';' || c == ':'; }

// Tokenises one line the way PTBLexer does (tokens in original case, before lowercasing).
std::vector<std::u32string> ptb_lex(const std::u32string& t) {
  std::vector<std::u32string> out;
  size_t i = 0;
  const size_t n = t.size();
  auto at = [&](size_t k) -> char32_t { return k < n ? t[k] : 0; };
  // tag_end[k]: the first '>', '\r' or '\n' at or after k (n if none), so SGML tags are found in linear time.
  std::vector<size_t> tag_end(n + 2, n);
  for (size_t k = n; k-- > 0;) tag_end[k] = (t[k] == '>' || t[k] == '\r' || t[k] == '\n') ? k : tag_end[k + 1];
  while (i < n) {
    const char32_t c = t[i];
    if (space(c) || newline(c) || c == 0 || c == 0x200B || c == 0x200E || c == 0x200F || c == 0xFEFF || c == 0x7F ||
        c == 0xFFFD) {
      ++i;
      continue;
    }
    // SGML = <\/?[A-Za-z!?][^>\r\n]*> : a tag is one token, its spaces made non-breaking (normalizeSpace).
    if (c == '<') {
      size_t k = i + 1;
      if (at(k) == '/') ++k;
      if (ascii_letter(at(k)) || at(k) == '!' || at(k) == '?') {
        const size_t close = tag_end[k];
        if (close < n && t[close] == '>') {
          std::u32string tok = t.substr(i, close + 1 - i);
          std::replace(tok.begin(), tok.end(), U' ', char32_t{0xA0});
          out.push_back(tok);
          i = close + 1;
          continue;
        }
      }
    }
    const bool word_start = alnum(c) || c == 0xAD || ((c == '-' || c == '+') && digit(at(i + 1)));
    if (word_start) {
      Candidate best;
      size_t w = 0;
      while (i + w < n && word_char(t[i + w])) ++w;
      // cannot; and the assimilations PTBTokenizerTest's gold splits: "gim me", "gon na", "wan na"
      if (ieq(t, i, "cannot")) offer(best, 6, 0, 3, kCannot);
      if (w == 5 && (ieq(t, i, "gimme") || ieq(t, i, "gonna") || ieq(t, i, "wanna"))) offer(best, 5, 0, 3, kCannot);
      if (w) {
        if (size_t r = redaux_length(t, i + w)) offer(best, w + r, 5, w, kWordRedaux);
        // SWORD/SREDAUX: [A-Za-z]*[A-MO-Za-mo-z] followed by n{APOSETCETERA}t
        if (w >= 2 && (t[i + w - 1] == 'n' || t[i + w - 1] == 'N') && apos_etc(at(i + w)) &&
            (at(i + w + 1) == 't' || at(i + w + 1) == 'T')) {
          bool ascii = true;
          for (size_t k = i; k < i + w - 1; ++k) ascii = ascii && ascii_letter(t[k]);
          const char32_t last = t[i + w - 2];
          if (ascii && last != 'n' && last != 'N') offer(best, w + 2, 6, w - 1, kSwordSredaux);
        }
        offer(best, w, 7, w, kWord);
        // APOWORD: [A-HJ-XZn]{APOSETCETERA}[:letter:]{2,} ; vowel{APOSETCETERA}[aeiouA-Z][:letter:]* ;
        // [lLdDjJ]{APOS} ; y{APOS}/[:letter:]
        if (w == 1 && apos_etc(at(i + 1))) {
          const char32_t f = t[i];
          if (((f >= 'A' && f <= 'H') || (f >= 'J' && f <= 'X') || f == 'Z' || f == 'n')) {
            size_t k = i + 2;
            while (k < n && letter(t[k])) ++k;
            if (k - (i + 2) >= 2) offer(best, k - i, 8, k - i, kApoword);
          }
          if (std::u32string(U"lLdDjJ").find(f) != std::u32string::npos && apos(at(i + 1))) offer(best, 2, 8, 2, kApoword);
          if ((f == 'y' || f == 'Y') && apos(at(i + 1)) && letter(at(i + 2))) offer(best, 3, 9, 2, kApoword);
        }
        if (vowel_any_case(t[i + w - 1]) && apos_etc(at(i + w))) {
          const char32_t f = at(i + w + 1);
          if (std::u32string(U"aeiou").find(f) != std::u32string::npos || (f >= 'A' && f <= 'Z')) {
            size_t k = i + w + 2;
            while (k < n && letter(t[k])) ++k;
            offer(best, k - i, 8, k - i, kApoword);
          }
        }
        static const char* literal_apowords[] = {"dunkin'", "somethin'", "ol'", "cont'd.", "cont'd", "'twas",
                                                 "nor'easter", "c'mon", "e'er", "s'mores", "ev'ry", "li'l", "nat'l"};
        for (const char* lit : literal_apowords) {
          if (lit[0] != '\'' && ieq(t, i, lit)) {
            offer(best, std::char_traits<char>::length(lit), 8, std::char_traits<char>::length(lit), kApoword);
          }
        }
      }
      if ((c == 'n' || c == 'N') && apos_etc(at(i + 1)) && (at(i + 2) == 't' || at(i + 2) == 'T'))
        offer(best, 3, 14, 3, kSredaux);  // SREDAUX: n't
      const size_t num = number_length(t, i);
      offer(best, num, 16, num, kNumber);
      const size_t frac = frac_or_date_length(t, i);
      offer(best, frac, 15, frac, kFrac);
      const size_t th3 = thing3_length(t, i);
      offer(best, th3, 21, th3, kThing3);
      // DOLSIGN = [A-Z]*\$ ("US$"; character classes ignore %caseless, so capitals only)
      size_t caps = 0;
      while (i + caps < n && t[i + caps] >= 'A' && t[i + caps] <= 'Z') ++caps;
      if (caps && at(i + caps) == '$') offer(best, caps + 1, 22, caps + 1, kDolsign);
      // THINGA = [A-Z]+([+&][A-Z]+)+ ("AT&T", "S&P")
      size_t tha = caps;
      while (caps && (at(i + tha) == '&' || at(i + tha) == '+') && at(i + tha + 1) >= 'A' && at(i + tha + 1) <= 'Z') {
        tha += 2;
        while (i + tha < n && t[i + tha] >= 'A' && t[i + tha] <= 'Z') ++tha;
      }
      if (tha > caps) {
        if (at(i + tha) == '.' && insentp(at(i + tha + 1))) offer(best, tha + 2, 44, tha + 1, kThinga);
        offer(best, tha, 45, tha, kThinga);
      }
      // Abbreviations and acronyms keeping their period
      const size_t acro = acro_length(t, i);
      if (acro) {
        if (at(i + acro) == '.') offer(best, acro + 1, 24, acro + 1, kAbbrev);  // ACRONYM / ABBREV2
        else if (space(at(i + acro)) || newline(at(i + acro))) offer(best, acro + 1, 29, acro, kAcro);
      }
      if (w && at(i + w) == '.' && is_abbreviation(t, i, w)) {
        // ABBREV1 followed by a sentence end gives "abbr." and "." (the same once "." is dropped)
        offer(best, w + 1, 25, w + 1, kAbbrev);
      }
      if (w && at(i + w) == '.' && insentp(at(i + w + 1))) offer(best, w + 2, 31, w + 1, kWordDotInsentp);
      const size_t hth = hthing_length(t, i);
      if (hth && at(i + hth) == '.' && insentp(at(i + hth + 1))) offer(best, hth + 2, 40, hth + 1, kHthing);
      offer(best, hth, 41, hth, kHthing);
      const size_t th = thing_length(t, i);
      if (th && at(i + th) == '.' && insentp(at(i + th + 1))) offer(best, th + 2, 42, th + 1, kThing);
      offer(best, th, 43, th, kThing);
      if (best.consume == 0) {  // a lone sign: handled below
        goto symbols;
      }
      std::u32string tok = t.substr(i, best.consume);
      switch (best.kind) {
        case kWordRedaux:
        case kWord: {
          tok.erase(std::remove(tok.begin(), tok.end(), 0xAD), tok.end());
          if (tok.empty()) tok = U"-";  // removeSoftHyphens: a lone soft hyphen is a hyphen
          tok = decode_utf8(americanize(encode_utf8(tok)));
          break;
        }
        case kSredaux: tok = latex_quote_right(tok); break;
        case kFrac:
        case kThing3: tok = escape_slash(tok, '/'); break;
        case kHthing:
        case kNumber:
        case kSwordSredaux: tok.erase(std::remove(tok.begin(), tok.end(), 0xAD), tok.end()); break;
        default: break;
      }
      out.push_back(tok);
      i += best.consume;
      continue;
    }
  symbols:
    if (apos(c) || apos_etc(c)) {
      // Words starting with an apostrophe, REDAUX/SREDAUX, then quotes.
      Candidate best;
      if (apos(c)) {
        if (size_t r = redaux_length(t, i)) {
          if (i + r < n && !ascii_letter(t[i + r])) offer(best, r + 1, 13, r, 1);
          offer(best, r, 60, r, 1);
        }
        if (at(i + 1) == 'n' || at(i + 1) == 'N') offer(best, apos(at(i + 2)) ? 3 : 2, 8, apos(at(i + 2)) ? 3 : 2, 2);
        if (ieq(t, i + 1, "em")) offer(best, 3, 8, 3, 2);
        if (ieq(t, i + 1, "till")) offer(best, 5, 8, 5, 2);
        else if (ieq(t, i + 1, "til")) offer(best, 4, 8, 4, 2);
        if (ieq(t, i + 1, "cause")) offer(best, 6, 8, 6, 2);
        if (at(i + 1) >= '2' && at(i + 1) <= '9' && at(i + 2) == '0' && (at(i + 3) == 's' || at(i + 3) == 'S'))
          offer(best, 4, 8, 4, 2);
        if (c == '\'' && ieq(t, i + 1, "twas")) offer(best, 5, 8, 5, 2);
        if (digit(at(i + 1)) && digit(at(i + 2)) && (space(at(i + 3)) || newline(at(i + 3))))
          offer(best, 4, 30, 3, 2);  // TBSPEC2 '[0-9][0-9]/{SPACENL}
      }
      if (c == '\'' && ascii_letter(at(i + 1)) && i + 2 < n && !space(t[i + 2]) && !newline(t[i + 2]))
        offer(best, 3, 59, 1, 3);  // an opening quote: "`"
      if (c == '\'' && at(i + 1) == '\'') offer(best, 2, 61, 2, 3);
      offer(best, 1, 61, 1, 3);
      if (best.kind == 1) out.push_back(latex_quote_right(t.substr(i, best.consume)));
      else if (best.kind == 2) out.push_back(t.substr(i, best.consume));
      else out.push_back(U"'");  // a quote: dropped as punctuation
      i += best.consume;
      continue;
    }
    if ((c == 'n' || c == 'N') && apos_etc(at(i + 1)) && (at(i + 2) == 't' || at(i + 2) == 'T')) {
      out.push_back(latex_quote_right(t.substr(i, 3)));
      i += 3;
      continue;
    }
    // Quotes, brackets, dashes, dots: all become tokens in ptbtokenizer.py's PUNCTUATIONS.
    if (c == '"' || c == '`' || (c >= 0x2018 && c <= 0x201F) || c == 0xAB || c == 0xBB || c == 0x2039 ||
        c == 0x203A || (c >= 0x91 && c <= 0x94)) {
      out.push_back(U"''");
      ++i;
      continue;
    }
    if (c == '(' || c == '[' || c == '<') { out.push_back(U"-LRB-"); ++i; continue; }
    if (c == ')' || c == ']' || c == '>') { out.push_back(U"-RRB-"); ++i; continue; }
    if (c == '{') { out.push_back(U"-LCB-"); ++i; continue; }
    if (c == '}') { out.push_back(U"-RCB-"); ++i; continue; }
    if (c == 0x96 || c == 0x97 || c == 0x2013 || c == 0x2014 || c == 0x2015) { out.push_back(U"--"); ++i; continue; }
    if (c == '-') {
      size_t j = i;
      while (j < n && t[j] == '-') ++j;
      const size_t len = j - i;
      if (len == 1) out.push_back(U"-");
      else if (len <= 4) out.push_back(U"--");
      else out.push_back(t.substr(i, len));  // five or more hyphens stay a token
      i = j;
      continue;
    }
    if (c == '.' || c == 0x85 || c == 0x2026) {
      size_t j = i;
      while (j < n && t[j] == '.' && j - i < 5) ++j;
      if (c != '.' || j - i >= 3) { out.push_back(U"..."); i = (c == '.') ? j : i + 1; continue; }
      // (\.[ \u00A0]){2,4}\.
      size_t k = i, groups = 0;
      while (groups < 4 && at(k) == '.' && (at(k + 1) == ' ' || at(k + 1) == 0xA0)) { k += 2; ++groups; }
      if (groups >= 2) {
        while (groups >= 2 && at(k) != '.') { k -= 2; --groups; }
        if (groups >= 2) { out.push_back(U"..."); i = k + 1; continue; }
      }
      out.push_back(U".");
      ++i;
      continue;
    }
    if (c == '?' || c == '!') {
      size_t j = i;
      while (j < n && (t[j] == '?' || t[j] == '!')) ++j;
      out.push_back(t.substr(i, j - i));
      i = j;
      continue;
    }
    if (insentp(c)) { out.push_back(std::u32string(1, c)); ++i; continue; }
    if (c == '/') { out.push_back(U"\\/"); ++i; continue; }
    if (c == '*') {
      size_t j = i;
      while (j < n && t[j] == '*') ++j;
      out.push_back(escape_slash(t.substr(i, j - i), '*'));
      i = j;
      continue;
    }
    // TWITTER = @[a-zA-Z_][a-zA-Z_0-9]* | #{WORD}
    if (c == '@' && (ascii_letter(at(i + 1)) || at(i + 1) == '_')) {
      size_t j = i + 1;
      while (j < n && (ascii_letter(t[j]) || digit(t[j]) || t[j] == '_')) ++j;
      out.push_back(t.substr(i, j - i));
      i = j;
      continue;
    }
    if (c == '#' && word_char(at(i + 1))) {
      size_t j = i + 1;
      while (j < n && word_char(t[j])) ++j;
      out.push_back(t.substr(i, j - i));
      i = j;
      continue;
    }
    if (c == '@' || c == '#' || c == '_') {
      size_t j = i;
      while (j < n && t[j] == c) ++j;
      out.push_back(t.substr(i, j - i));
      i = j;
      continue;
    }
    if (c < 0x80) {
      if (c > 0x20) out.push_back(std::u32string(1, c));  // & % + = ~ ^ $ and the like
      ++i;
      continue;
    }
    if (c == 0xA2) { out.push_back(U"cents"); ++i; continue; }
    if (c == 0xA3) { out.push_back(U"#"); ++i; continue; }
    if (c == 0xA4 || c == 0x20A0 || c == 0x20AC || c == 0x80) { out.push_back(U"$"); ++i; continue; }
    if ((c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) || (c >= 0x205F && c <= 0x206F) ||
        (c >= 0x80 && c < 0xA0)) {
      ++i;  // invisible or control characters: deleted
      continue;
    }
    out.push_back(std::u32string(1, c));  // a symbol that stands alone
    ++i;
  }
  return out;
}

bool is_punctuation(const std::string& tok) {
  static const std::set<std::string> p = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                                          ".",  "?", "!",  ",", ":",     "-",     "--",    "...", ";"};
  return p.count(tok) > 0;
}

}  // namespace

std::vector<std::string> ptb_tokenize(const std::string& caption) {
  std::string line = caption;
  std::replace(line.begin(), line.end(), '\n', ' ');  // ptbtokenizer.py: c['caption'].replace('\n', ' ')
  std::vector<std::string> out;
  for (const auto& tok : ptb_lex(decode_utf8(line))) {
    std::u32string low = tok;
    for (auto& ch : low) ch = lower(ch);
    std::string s = encode_utf8(low);
    if (!is_punctuation(s)) out.push_back(s);
  }
  return out;
}

}  // namespace satcap
