// Caption metrics: small cases computed by hand from the official formulas (pycocoevalcap), the
// PTB tokenisation emulation, the `satcap score` command, and agreement with an independent
// Python re-implementation of the official scorers (tools/metrics_reference.py).
#include "testing.h"

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>

#include "satcap/eval/metrics.h"
#include "satcap/eval/ptb_tokenizer.h"
#include "satcap/runtime/error.h"
#include "test_util.h"

using namespace satcap;
using Refs = std::map<std::string, std::vector<std::string>>;
using Cands = std::map<std::string, std::string>;

namespace {
const double tiny = 1e-15, small = 1e-9;  // bleu_scorer.py's guards

std::string joined(const std::vector<std::string>& t) {
  std::string s;
  for (size_t i = 0; i < t.size(); ++i) s += (i ? " " : "") + t[i];
  return s;
}
}  // namespace

TEST_CASE("an exact match: BLEU near 1 up to the official tiny/small guards, CIDEr from idf = log 2", "[metrics]") {
  // Two images, so idf = log(2) - log(1) for every reference n-gram.
  SECTION("four-word captions: every order matches, CIDEr = 10") {
    auto s = score_tokenized(Refs{{"1", {"a b c d"}}, {"2", {"e f g h"}}}, Cands{{"1", "a b c d"}, {"2", "e f g h"}});
    for (const char* k : {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"}) REQUIRE(s.corpus[k] == Approx(1.0).epsilon(1e-9));
    REQUIRE(s.corpus["ROUGE-L"] == Approx(1.0));
    REQUIRE(s.corpus["CIDEr"] == Approx(10.0));  // cosine 1 for n = 1..4, mean 1, x10
    REQUIRE(s.per_image["1"]["CIDEr"] == Approx(10.0));
  }
  SECTION("two-word captions: no trigrams, so p3 = (0 + 1e-15) / (0 + 1e-9) and CIDEr = 5") {
    auto s = score_tokenized(Refs{{"1", {"a b"}}, {"2", {"c d"}}}, Cands{{"1", "a b"}, {"2", "c d"}});
    // corpus: guess = correct = [4, 2, 0, 0]; testlen = reflen = 4, ratio (4+tiny)/(4+small) < 1
    const double bp = std::exp(1 - 1 / ((4 + tiny) / (4 + small)));
    const double p1 = (4 + tiny) / (4 + small), p2 = (2 + tiny) / (2 + small), p3 = tiny / small;
    REQUIRE(s.corpus["BLEU-1"] == Approx(p1 * bp).epsilon(1e-12));
    REQUIRE(s.corpus["BLEU-3"] == Approx(std::cbrt(p1 * p2 * p3) * bp).epsilon(1e-12));  // ~0.01
    REQUIRE(s.corpus["BLEU-3"] == Approx(0.01).epsilon(1e-6));
    REQUIRE(s.corpus["BLEU-4"] == Approx(std::pow(p1 * p2 * p3 * p3, 0.25) * bp).epsilon(1e-12));  // ~0.001
    // CIDEr: orders 1 and 2 give cosine 1, orders 3 and 4 have no n-grams (0): (1+1+0+0)/4*10
    REQUIRE(s.corpus["CIDEr"] == Approx(5.0));
  }
  SECTION("one image alone: log(1) = 0 makes every idf 0, so CIDEr is 0") {
    auto s = score_tokenized(Refs{{"1", {"a b c d"}}}, Cands{{"1", "a b c d"}});
    REQUIRE(s.corpus["CIDEr"] == 0.0);
  }
}

TEST_CASE("a one-word caption: brevity penalty and ROUGE-L by hand", "[metrics]") {
  auto s = score_tokenized(Refs{{"1", {"a cat sat"}}}, Cands{{"1", "cat"}});
  // testlen 1, reflen 3: BP = exp(1 - 3/1) (up to the guards)
  const double ratio = (1 + tiny) / (3 + small);
  const double bp = std::exp(1 - 1 / ratio);
  REQUIRE(bp == Approx(std::exp(-2.0)).epsilon(1e-8));
  const double p1 = (1 + tiny) / (1 + small), p2 = tiny / small;
  REQUIRE(s.corpus["BLEU-1"] == Approx(p1 * bp).epsilon(1e-12));
  REQUIRE(s.corpus["BLEU-2"] == Approx(std::sqrt(p1 * p2) * bp).epsilon(1e-12));
  // LCS 1: P = 1/1, R = 1/3, F = (1 + 1.2^2) P R / (R + 1.2^2 P)
  const double P = 1.0, R = 1.0 / 3;
  REQUIRE(s.corpus["ROUGE-L"] == Approx(2.44 * P * R / (R + 1.44 * P)));
  REQUIRE(s.corpus["ROUGE-L"] == Approx(0.458647).epsilon(1e-5));
}

TEST_CASE("no overlap at all gives the official tiny values, not 0", "[metrics]") {
  auto s = score_tokenized(Refs{{"1", {"a b c"}}}, Cands{{"1", "x y z"}});
  // guess = [3, 2, 1, 0], correct = 0; testlen = reflen = 3
  const double bp = std::exp(1 - (3 + small) / (3 + tiny));
  const double p1 = tiny / (3 + small), p2 = tiny / (2 + small), p3 = tiny / (1 + small), p4 = tiny / small;
  REQUIRE(s.corpus["BLEU-1"] == Approx(p1 * bp).epsilon(1e-9));  // ~3.3e-16
  REQUIRE(s.corpus["BLEU-1"] > 0.0);
  REQUIRE(s.corpus["BLEU-4"] == Approx(std::pow(p1 * p2 * p3 * p4, 0.25) * bp).epsilon(1e-9));
  REQUIRE(s.corpus["ROUGE-L"] == 0.0);
  REQUIRE(s.corpus["CIDEr"] == 0.0);
  // per image: the official bleu_list value ((correct + tiny) / (guess + small)) ^ (1/n)
  REQUIRE(s.per_image["1"]["BLEU-2"] == Approx(std::pow(p2, 0.5)).epsilon(1e-9));
}

TEST_CASE("repeated words are clipped in BLEU and CIDEr", "[metrics]") {
  // "the" x3 against one "the": BLEU-1 correct = 1 of 3 (testlen 3 > reflen 2: no BP)
  auto s = score_tokenized(Refs{{"1", {"the cat"}}, {"2", {"a dog"}}}, Cands{{"1", "the the the"}, {"2", "a dog"}});
  // corpus unigrams: correct 1 + 2, guess 3 + 2; testlen 5, reflen 4
  REQUIRE(s.corpus["BLEU-1"] == Approx((3 + tiny) / (5 + small)));
  REQUIRE(s.per_image["1"]["BLEU-1"] == Approx((1 + tiny) / (3 + small)));
  // CIDEr image 1, with L = log 2 (every reference n-gram has df 1; "the the" has df 0 -> idf L too):
  // unigrams: hyp the = 3L (norm 3L), ref the = L, cat = L (norm sqrt(2) L)
  //   clipped: min(3L, L) * L / (3L * sqrt(2) L) = 1 / (3 sqrt 2)   [unclipped would be 1/sqrt 2]
  // bigrams: "the the" not in the reference: 0; trigrams: reference has none: 0.
  // length (bigram count) 2 vs 1: penalty exp(-1 / (2 * 36)).
  const double expected1 = (1 / (3 * std::sqrt(2.0))) / 4 * std::exp(-1.0 / 72) * 10;
  REQUIRE(s.per_image["1"]["CIDEr"] == Approx(expected1));
  // image 2 is an exact two-word match: (1 + 1) / 4 * 10
  REQUIRE(s.per_image["2"]["CIDEr"] == Approx(5.0));
  REQUIRE(s.corpus["CIDEr"] == Approx((expected1 + 5.0) / 2));
}

TEST_CASE("BLEU brevity penalty uses the closest reference length, ties to the shorter", "[metrics]") {
  SECTION("tie: lengths 2 and 4 for a 3-word candidate -> 2, no penalty") {
    auto s = score_tokenized(Refs{{"1", {"a b c d", "a b"}}}, Cands{{"1", "a b c"}});
    REQUIRE(s.corpus["BLEU-1"] == Approx(1.0).epsilon(1e-8));  // the longer would give exp(1 - 4/3)
  }
  SECTION("closest, not shortest: lengths 1 and 5 for a 4-word candidate -> 5") {
    auto s = score_tokenized(Refs{{"1", {"a", "a b c d e"}}}, Cands{{"1", "a b c d"}});
    REQUIRE(s.corpus["BLEU-1"] == Approx(std::exp(1 - 5.0 / 4)).epsilon(1e-8));
  }
  SECTION("images with different numbers of references: corpus totals") {
    // image 1: testlen 2, reflen 3; image 2: testlen 4, refs of 2, 4, 1 -> 4. ratio 6/7.
    auto s = score_tokenized(Refs{{"1", {"a b c"}}, {"2", {"x y", "x y z w", "q"}}},
                             Cands{{"1", "a b"}, {"2", "x y z w"}});
    REQUIRE(s.corpus["BLEU-1"] == Approx(std::exp(1 - 7.0 / 6)).epsilon(1e-8));  // p1 = 6/6
    REQUIRE(s.corpus["BLEU-2"] == Approx(std::exp(1 - 7.0 / 6)).epsilon(1e-8));  // p2 = (1 + 3) / (1 + 3)
    REQUIRE(s.images_scored == 2);
  }
}

TEST_CASE("CIDEr document frequencies come from the references only", "[metrics]") {
  // Candidate 1 says "z", which only image 2's reference has: df(z) = 1, not 2.
  auto s = score_tokenized(Refs{{"1", {"x y"}}, {"2", {"z w"}}}, Cands{{"1", "x z"}, {"2", "z w"}});
  // L = log 2. Image 1: hyp x = L, z = L (norm sqrt2 L); ref x = L, y = L (norm sqrt2 L):
  // unigram cosine L^2 / (2 L^2) = 1/2; bigram "x z" vs "x y": 0. -> 0.5 / 4 * 10 = 1.25
  REQUIRE(s.per_image["1"]["CIDEr"] == Approx(1.25));
  REQUIRE(s.per_image["2"]["CIDEr"] == Approx(5.0));
  REQUIRE(s.corpus["CIDEr"] == Approx(3.125));
}

TEST_CASE("ROUGE-L takes max precision and max recall from different references (beta 1.2)", "[metrics]") {
  // candidate "a b c d" (4); ref1 "a b x" (3): LCS 2, P 2/4, R 2/3; ref2 8 tokens: LCS 3, P 3/4, R 3/8
  auto s = score_tokenized(Refs{{"1", {"a b x", "a b c y y y y y"}}}, Cands{{"1", "a b c d"}});
  const double P = 0.75, R = 2.0 / 3, b2 = 1.2 * 1.2;
  REQUIRE(s.corpus["ROUGE-L"] == Approx((1 + b2) * P * R / (R + b2 * P)));
  REQUIRE(s.corpus["ROUGE-L"] == Approx(0.698473).epsilon(1e-5));
}

TEST_CASE("missing and unknown images are reported, not scored", "[metrics]") {
  auto s = score_tokenized(Refs{{"1", {"a b"}}, {"2", {"c d"}}, {"3", {"e"}}}, Cands{{"1", "a b"}, {"9", "z"}});
  REQUIRE(s.images_scored == 1);
  REQUIRE(s.missing == std::vector<std::string>{"2", "3"});
  REQUIRE(s.unknown == std::vector<std::string>{"9"});
  REQUIRE(s.per_image.size() == 1);
  REQUIRE_THROWS_AS(score_tokenized(Refs{{"1", {"a"}}}, Cands{{"2", "a"}}), InputError);
  // an empty candidate scores 0 without crashing
  auto e = score_captions(Refs{{"1", {"a dog"}}, {"2", {"a cat"}}}, Cands{{"1", ""}, {"2", "..."}});
  REQUIRE(e.corpus["ROUGE-L"] == 0.0);
  REQUIRE(e.corpus["CIDEr"] == 0.0);
}

TEST_CASE("tokenisation follows PTBTokenizer -lowerCase and drops the punctuation tokens", "[metrics]") {
  auto tok = [](const std::string& s) { return joined(ptb_tokenize(s)); };
  REQUIRE(tok("A Dog's toy, on the couch.") == "a dog 's toy on the couch");
  REQUIRE(tok("The man doesn't know.") == "the man does n't know");
  REQUIRE(tok("They can't go; it cannot be") == "they ca n't go it can not be");
  REQUIRE(tok("We're here, you've been and I'm off!") == "we 're here you 've been and i 'm off");
  REQUIRE(tok("A black-and-white photo of a t-shirt") == "a black-and-white photo of a t-shirt");
  // PTBTokenizer -lowerCase lowercases "-LRB-" too, and PUNCTUATIONS is case-sensitive: the official
  // evaluation keeps brackets as "-lrb-" / "-rrb-" tokens.
  REQUIRE(tok("A photo (old) [x] {y}") == "a photo -lrb- old -rrb- -lrb- x -rrb- -lcb- y -rcb-");
  REQUIRE(tok("A \"quoted\" word and 'single' ones") == "a quoted word and single ones");
  REQUIRE(tok("A grey cat on a colourful centre") == "a gray cat on a colorful center");
  REQUIRE(tok("Is it?! Yes!!") == "is it ?! yes !!");
  REQUIRE(tok("Mr. Smith at St. Mark's in the U.S. today") == "mr. smith at st. mark 's in the u.s. today");
  REQUIRE(tok("3.5 inches, 1,000 people and a 10-year-old") == "3.5 inches 1,000 people and a 10-year-old");
  REQUIRE(tok("salt and/or pepper / spice") == "salt and\\/or pepper \\/ spice");
  REQUIRE(tok("Wait... what - no -- ok") == "wait what no ok");
  REQUIRE(tok("The dog\xE2\x80\x99s bone \xE2\x80\x9Cnow\xE2\x80\x9D") == "the dog 's bone now");
  REQUIRE(tok("A  DOG\nrunning .") == "a dog running");
  REQUIRE(tok("o'clock rock 'n' roll") == "o'clock rock 'n' roll");
  REQUIRE(tok("").empty());
}

namespace {
struct Files {
  std::filesystem::path dir, results, annotations;
};

Files write_inputs(const std::string& name, const std::string& results, const std::string& annotations) {
  Files f;
  f.dir = fresh_temp_dir(name);
  f.results = f.dir / "results.json";
  f.annotations = f.dir / "captions.json";
  write_text_file(f.results, results);
  write_text_file(f.annotations, annotations);
  return f;
}

const char* kAnnotations =
    R"({"images": [{"id": 1}, {"id": 2}, {"id": 3}], "annotations": [
      {"id": 1, "image_id": 1, "caption": "A dog runs on the grass."},
      {"id": 2, "image_id": 1, "caption": "a brown dog running"},
      {"id": 3, "image_id": 2, "caption": "Two cats sleep on a bed."},
      {"id": 4, "image_id": 3, "caption": "A red car."}]})";
}  // namespace

TEST_CASE("satcap score prints the metrics as JSON and reports missing images", "[metrics][cli]") {
  auto f = write_inputs("score_json", R"([{"image_id": 1, "caption": "a dog running on grass"},
                                         {"image_id": 2, "caption": "two cats on a bed"}])",
                        kAnnotations);
  const auto per = f.dir / "per_image.json";
  auto r = run_satcap({"score", "--results", f.results.string(), "--annotations", f.annotations.string(), "--json",
                       "--per-image", per.string()});
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"}) {
    REQUIRE(j.contains(k));
    REQUIRE(j[k].is_number());
  }
  REQUIRE_FALSE(j.contains("METEOR"));
  REQUIRE_FALSE(j.contains("SPICE"));
  REQUIRE(j["not_computed"] == nlohmann::json({"METEOR", "SPICE"}));
  REQUIRE(j["images_scored"] == 2);
  REQUIRE(j["missing_image_ids"] == nlohmann::json({"3"}));
  REQUIRE_THAT(r.err, Catch::Contains("1 of 3") && Catch::Contains("(3)"));
  const auto p = nlohmann::json::parse(read_text_file(per));
  REQUIRE(p.size() == 2);
  REQUIRE(p[0]["image_id"] == 1);
  REQUIRE(p[0].contains("CIDEr"));

  auto text = run_satcap({"score", "--results", f.results.string(), "--annotations", f.annotations.string()});
  REQUIRE(text.exit_code == 0);
  REQUIRE_THAT(text.out, Catch::Contains("CIDEr") && Catch::Contains("BLEU-4") && Catch::Contains("not computed"));
}

TEST_CASE("satcap score refuses malformed inputs with exit 3 naming the file and entry", "[metrics][cli]") {
  auto run = [](const Files& f) {
    return run_satcap({"score", "--results", f.results.string(), "--annotations", f.annotations.string()});
  };
  auto bad_json = write_inputs("score_bad_json", "[{\"image_id\": 1, ", kAnnotations);
  auto r = run(bad_json);
  REQUIRE(r.exit_code == 3);
  REQUIRE_THAT(r.err, Catch::Contains("results.json"));

  auto no_caption = write_inputs("score_no_caption", R"([{"image_id": 1, "caption": "a"}, {"image_id": 2}])",
                                 kAnnotations);
  r = run(no_caption);
  REQUIRE(r.exit_code == 3);
  REQUIRE_THAT(r.err, Catch::Contains("entry 1") && Catch::Contains("caption"));

  auto duplicate = write_inputs("score_duplicate", R"([{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}])",
                                kAnnotations);
  r = run(duplicate);
  REQUIRE(r.exit_code == 3);
  REQUIRE_THAT(r.err, Catch::Contains("already has a caption"));

  auto unknown = write_inputs("score_unknown", R"([{"image_id": 1, "caption": "a"}, {"image_id": 77, "caption": "b"}])",
                              kAnnotations);
  r = run(unknown);
  REQUIRE(r.exit_code == 3);
  REQUIRE_THAT(r.err, Catch::Contains("77"));

  auto bad_ann = write_inputs("score_bad_ann", R"([{"image_id": 1, "caption": "a"}])", R"({"images": []})");
  r = run(bad_ann);
  REQUIRE(r.exit_code == 3);
  REQUIRE_THAT(r.err, Catch::Contains("captions.json"));

  auto bad_id = write_inputs("score_bad_id", R"([{"image_id": [1], "caption": "a"}])", kAnnotations);
  r = run(bad_id);
  REQUIRE(r.exit_code == 3);
  REQUIRE_THAT(r.err, Catch::Contains("entry 0") && Catch::Contains("image_id"));
}

TEST_CASE("satcap score agrees with the Python re-implementation of the official scorers", "[metrics][cli]") {
  const std::string python = "/usr/bin/python3";
  if (!std::filesystem::exists(python)) {
    WARN("no /usr/bin/python3: reference comparison skipped");
    return;
  }
  // Random captions over a small vocabulary (so n-grams repeat), 1-5 references per image,
  // some images without a result, candidates of 0-14 words.
  std::mt19937 rng(20150211);
  const std::vector<std::string> vocab = {"a", "the", "dog", "cat", "man", "on", "in", "of", "red", "with",
                                          "sitting", "table", "grass", "two", "is", "and", "ball", "bed"};
  auto sentence = [&](int lo, int hi) {
    std::string s;
    const int n = std::uniform_int_distribution<int>(lo, hi)(rng);
    for (int i = 0; i < n; ++i) s += (i ? " " : "") + vocab[rng() % vocab.size()];
    return s;
  };
  nlohmann::json ann = {{"images", nlohmann::json::array()}, {"annotations", nlohmann::json::array()}};
  nlohmann::json res = nlohmann::json::array();
  int ann_id = 0;
  for (int img = 0; img < 60; ++img) {
    const int nrefs = std::uniform_int_distribution<int>(1, 5)(rng);
    for (int k = 0; k < nrefs; ++k)
      ann["annotations"].push_back({{"id", ++ann_id}, {"image_id", img}, {"caption", sentence(1, 14)}});
    if (img % 7 != 3) res.push_back({{"image_id", img}, {"caption", sentence(img % 11 == 0 ? 0 : 1, 14)}});
  }
  auto f = write_inputs("score_reference", res.dump(), ann.dump());
  const auto per = f.dir / "per_image.json";
  auto r = run_satcap({"score", "--results", f.results.string(), "--annotations", f.annotations.string(), "--json",
                       "--per-image", per.string(), "--quiet"});
  REQUIRE(r.exit_code == 0);
  const auto ours = nlohmann::json::parse(r.out);
  const auto ours_per = nlohmann::json::parse(read_text_file(per));

  const auto ref_out = f.dir / "reference.json";
  const std::string cmd = python + " '" + (source_dir() / "tools" / "metrics_reference.py").string() + "' '" +
                          f.results.string() + "' '" + f.annotations.string() + "' > '" + ref_out.string() + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  const auto ref = nlohmann::json::parse(read_text_file(ref_out));
  double worst = 0;
  for (const auto& name : metric_names()) {
    const double a = ours[name].get<double>(), b = ref["corpus"][name].get<double>();
    worst = std::max(worst, std::abs(a - b));
    REQUIRE(a == Approx(b).margin(1e-6));
  }
  REQUIRE(ours_per.size() == ref["per_image"].size());
  for (const auto& e : ours_per) {
    const auto& rp = ref["per_image"][e["image_id"].dump()];
    for (const auto& name : metric_names()) {
      worst = std::max(worst, std::abs(e[name].get<double>() - rp[name].get<double>()));
      REQUIRE(e[name].get<double>() == Approx(rp[name].get<double>()).margin(1e-6));
    }
  }
  INFO("largest difference to the reference: " << worst);
  REQUIRE(worst < 1e-9);
}
