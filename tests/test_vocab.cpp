// Tokenisation and the vocabulary.
#include "testing.h"
#include <nlohmann/json.hpp>

#include "satcap/data/dataset.h"
#include "satcap/model/vocab.h"
#include "satcap/runtime/error.h"
#include "test_util.h"

using namespace satcap;
using Tokens = std::vector<std::string>;

TEST_CASE("Tokenisation: lowercase, punctuation deleted, whitespace split", "[vocab]") {
  CHECK(tokenize_caption("A Man's  T-shirt, on\tthe BEACH.") == Tokens{"a", "mans", "tshirt", "on", "the", "beach"});
  CHECK(tokenize_caption("  ... !!! ").empty());
  CHECK(tokenize_caption("caf\xc3\xa9 Ol\xc3\xa9") == Tokens{"caf\xc3\xa9", "ol\xc3\xa9"});  // UTF-8 kept
}

TEST_CASE("Vocabulary: specials, min count, deterministic order", "[vocab]") {
  std::vector<Tokens> caps{{"b", "a", "c"}, {"a", "b"}, {"a", "d"}, {"c", "b"}, {"a"}};
  VocabOptions o;
  o.min_count = 2;
  Vocabulary v = Vocabulary::build(caps, o);
  // counts: a 4, b 3, c 2, d 1 -> d is <unk>
  REQUIRE(v.size() == 7);
  CHECK(v.word(Vocabulary::pad_id) == "<pad>");
  CHECK(v.word(Vocabulary::start_id) == "<start>");
  CHECK(v.word(Vocabulary::end_id) == "<end>");
  CHECK(v.word(Vocabulary::unk_id) == "<unk>");
  CHECK(v.id("a") == 4);
  CHECK(v.id("b") == 5);
  CHECK(v.id("c") == 6);
  CHECK(v.id("d") == Vocabulary::unk_id);
  CHECK_FALSE(v.contains("d"));
  // Ties by word, independent of input order.
  std::vector<Tokens> ties{{"z", "y", "x"}, {"x", "y", "z"}};
  o.min_count = 1;
  Vocabulary t = Vocabulary::build(ties, o);
  CHECK(t.word(4) == "x");
  CHECK(t.word(5) == "y");
  CHECK(t.word(6) == "z");
  // Default min_count is 5.
  std::vector<Tokens> many(5, Tokens{"often"});
  many.push_back({"rare"});
  Vocabulary d = Vocabulary::build(many);
  CHECK(d.contains("often"));
  CHECK_FALSE(d.contains("rare"));
  // max_size keeps the most frequent.
  o.max_size = 5;
  CHECK(Vocabulary::build(caps, o).size() == 5);
  CHECK(Vocabulary::build(caps, o).contains("a"));
  o.min_count = 0;
  CHECK_THROWS_AS(Vocabulary::build(caps, o), UsageError);
}

TEST_CASE("Vocabulary: encode, truncation at max_length, decode", "[vocab]") {
  std::vector<Tokens> caps{{"a", "b", "c", "d"}};
  VocabOptions o;
  o.min_count = 1;
  o.max_length = 3;
  Vocabulary v = Vocabulary::build(caps, o);
  auto ids = v.encode({"a", "zzz", "b", "c", "d"});
  REQUIRE(ids.size() == 5);  // <start> + 3 words + <end>
  CHECK(ids.front() == Vocabulary::start_id);
  CHECK(ids.back() == Vocabulary::end_id);
  CHECK(ids[2] == Vocabulary::unk_id);
  CHECK(v.decode(ids) == "a <unk> b");
  CHECK_FALSE(v.fits({"a", "b", "c", "d"}));
  CHECK(v.fits({"a", "b", "c"}));
  // Decoding stops at <end> and skips <pad>/<start>.
  CHECK(v.decode({Vocabulary::start_id, v.id("d"), Vocabulary::pad_id, v.id("a"), Vocabulary::end_id, v.id("b")}) == "d a");
  CHECK_THROWS_AS(v.word(999), InputError);
}

TEST_CASE("Vocabulary: built from the training split only", "[vocab]") {
  Dataset d;
  d.source = "memory";
  auto add = [&](std::int64_t id, const std::string& split, const std::string& raw) {
    ImageEntry e;
    e.id = id;
    e.split = split;
    for (int i = 0; i < 5; ++i) e.captions.push_back({raw});
    d.images.push_back(e);
  };
  add(1, "train", "a dog");
  add(2, "val", "a secret");
  add(3, "test", "hidden word");
  d.reindex();
  Vocabulary v = Vocabulary::build(d);
  CHECK(v.contains("dog"));
  CHECK(v.contains("a"));
  CHECK_FALSE(v.contains("secret"));
  CHECK_FALSE(v.contains("hidden"));
  CHECK_THROWS_AS(Vocabulary::build(d, {}, "nosuchsplit"), InputError);
}

TEST_CASE("Vocabulary: save/load round trip, newer format refused", "[vocab]") {
  auto dir = fresh_temp_dir("vocab_io");
  std::vector<Tokens> caps{{"b", "a"}, {"a", "\xc3\xa9t\xc3\xa9"}, {"\xc3\xa9t\xc3\xa9"}};
  VocabOptions o;
  o.min_count = 1;
  o.max_length = 7;
  Vocabulary v = Vocabulary::build(caps, o);
  v.save(dir / "vocab.json");
  Vocabulary w = Vocabulary::load(dir / "vocab.json");
  REQUIRE(w.size() == v.size());
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(w.word(static_cast<std::int64_t>(i)) == v.word(static_cast<std::int64_t>(i)));
  CHECK(w.max_length() == 7);
  CHECK(w.to_json() == v.to_json());

  nlohmann::json j = v.to_json();
  j["format_version"] = Vocabulary::format_version + 1;
  write_text_file(dir / "newer.json", j.dump());
  try {
    Vocabulary::load(dir / "newer.json");
    FAIL("newer vocabulary accepted");
  } catch (const ModelError& e) {
    CHECK_THAT(e.what(), Catch::Contains("newer"));
  }
  write_text_file(dir / "broken.json", "{\"words\": [");
  CHECK_THROWS_AS(Vocabulary::load(dir / "broken.json"), ModelError);
  j = v.to_json();
  j["words"][0] = "<unk>";
  CHECK_THROWS_AS(Vocabulary::from_json(j), ModelError);
  CHECK_THROWS_AS(Vocabulary::load(dir / "missing.json"), ModelError);
  CHECK_THROWS_AS(v.save(dir / "no/such/folder/vocab.json"), OutputError);
}
