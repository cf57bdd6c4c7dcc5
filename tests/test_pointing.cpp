// Pointing: hand-made boxes and attention rows whose answer is known from the geometry (cell
// centres computed here from the grid, not by the code under test), the word -> class lexicon and
// the COCO instances reader.
#include "testing.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <stdexcept>

#include "satcap/eval/pointing.h"
#include "satcap/runtime/error.h"
#include "test_util.h"

using namespace satcap;

namespace {

std::vector<float> one_hot(int rows, int cols, int r, int c) {
  std::vector<float> a(static_cast<std::size_t>(rows * cols), 0.f);
  a[static_cast<std::size_t>(r * cols + c)] = 1.f;
  return a;
}

ImageObjects image(int w, int h, std::vector<ObjectBox> boxes) {
  ImageObjects o;
  o.width = w;
  o.height = h;
  o.boxes = std::move(boxes);
  return o;
}

const ClassLexicon& shapes() {
  static const ClassLexicon lex({"circle", "square", "triangle"});
  return lex;
}

}  // namespace

TEST_CASE("pointing: the argmax cell inside the named object's box is a hit", "[pointing]") {
  // 100x100 image, 4x4 grid: cell (0, 0) spans [0, 25) and its centre is (12.5, 12.5).
  const ImageObjects img = image(100, 100, {{"circle", 0, 0, 30, 30}});
  const ImagePointing p =
      point_caption(img, {"a", "red", "circle"}, {one_hot(4, 4, 2, 2), one_hot(4, 4, 1, 1), one_hot(4, 4, 0, 0)}, 4, 4,
                    shapes());
  REQUIRE(p.words.size() == 1);  // "a" and "red" name no class
  const WordPointing& w = p.words[0];
  CHECK(w.position == 2);
  CHECK(w.word == "circle");
  CHECK(w.category == "circle");
  CHECK(w.present);
  CHECK(w.hit);
  CHECK(w.cell == 0);
  CHECK(w.row == 0);
  CHECK(w.col == 0);
  CHECK(w.x == Approx(12.5));
  CHECK(w.y == Approx(12.5));
  CHECK(w.peak == Approx(1.0));
  CHECK(w.mass == Approx(1.0));
  // Cells whose centre is in [0, 30]^2: only (0, 0) (the next centre is at 37.5).
  CHECK(w.chance == Approx(1.0 / 16));
  CHECK(p.counted == 1);
  CHECK(p.hits == 1);
  CHECK(p.entropy_words == 3);
  CHECK(p.entropy_sum == Approx(0.0).margin(1e-12));
}

TEST_CASE("pointing: the argmax outside every box of the class is a miss", "[pointing]") {
  const ImageObjects img = image(100, 100, {{"circle", 0, 0, 30, 30}, {"square", 60, 60, 40, 40}});
  // The circle's word looks at the square (cell (3, 3), centre (87.5, 87.5)).
  std::vector<float> a(16, 0.f);
  a[15] = 0.7f;  // (3, 3)
  a[0] = 0.3f;   // (0, 0): inside the circle, but not the argmax
  const ImagePointing p = point_caption(img, {"circle"}, {a}, 4, 4, shapes());
  REQUIRE(p.words.size() == 1);
  CHECK(p.words[0].present);
  CHECK_FALSE(p.words[0].hit);
  CHECK(p.words[0].cell == 15);
  CHECK(p.words[0].mass == Approx(0.3));
  CHECK(p.counted == 1);
  CHECK(p.hits == 0);
}

TEST_CASE("pointing: words that name no class, and classes absent from the image, are not counted", "[pointing]") {
  const ImageObjects img = image(100, 100, {{"circle", 0, 0, 30, 30}});
  const ImagePointing p = point_caption(img, {"a", "triangle", "above", "squares"},
                                        {one_hot(4, 4, 0, 0), one_hot(4, 4, 0, 0), one_hot(4, 4, 0, 0),
                                         one_hot(4, 4, 0, 0)},
                                        4, 4, shapes());
  // "triangle" and "squares" (plural) name classes that have no box here.
  REQUIRE(p.words.size() == 2);
  CHECK(p.words[0].category == "triangle");
  CHECK(p.words[1].category == "square");
  CHECK_FALSE(p.words[0].present);
  CHECK_FALSE(p.words[1].present);
  CHECK_FALSE(p.words[0].hit);
  CHECK(p.counted == 0);
  CHECK(p.hits == 0);

  PointingTally tally;
  tally.add(p);
  CHECK_FALSE(tally.pointing().has_value());
  CHECK_FALSE(tally.mass().has_value());
  CHECK(tally.absent() == 2);
  CHECK(tally.entropy().has_value());
}

TEST_CASE("pointing: inside any box of the class counts, with several boxes", "[pointing]") {
  const ImageObjects img = image(100, 100, {{"circle", 0, 0, 20, 20}, {"circle", 70, 70, 30, 30}});
  const ImagePointing hit_second = point_caption(img, {"circles"}, {one_hot(4, 4, 3, 3)}, 4, 4, shapes());
  REQUIRE(hit_second.words.size() == 1);
  CHECK(hit_second.words[0].hit);
  // Cells whose centre is in a circle box: (0, 0) and (3, 3).
  CHECK(hit_second.words[0].chance == Approx(2.0 / 16));
  const ImagePointing miss = point_caption(img, {"circle"}, {one_hot(4, 4, 0, 3)}, 4, 4, shapes());
  CHECK_FALSE(miss.words[0].hit);
}

TEST_CASE("pointing: non-square images map the grid by stretching", "[pointing]") {
  // 200 wide, 100 high, grid 2 rows x 4 cols: a cell is 50 x 50; cell (1, 3) has centre (175, 75).
  const ImageObjects img = image(200, 100, {{"circle", 160, 60, 20, 20}, {"square", 60, 60, 30, 30}});
  const ImagePointing p =
      point_caption(img, {"circle", "square"}, {one_hot(2, 4, 1, 3), one_hot(2, 4, 1, 1)}, 2, 4, shapes());
  REQUIRE(p.words.size() == 2);
  CHECK(p.words[0].x == Approx(175.0));
  CHECK(p.words[0].y == Approx(75.0));
  CHECK(p.words[0].hit);
  // Cell (1, 1): centre (75, 75), inside [60, 90]^2.
  CHECK(p.words[1].x == Approx(75.0));
  CHECK(p.words[1].hit);
  // The same box on a square reading of the grid (cell 50 wide -> 25 wide) would miss: check that
  // a 100-wide image with the same alpha gives another centre.
  const ImageObjects narrow = image(100, 100, {{"circle", 160, 60, 20, 20}});
  const ImagePointing q = point_caption(narrow, {"circle"}, {one_hot(2, 4, 1, 3)}, 2, 4, shapes());
  CHECK(q.words[0].x == Approx(87.5));
  CHECK_FALSE(q.words[0].hit);
}

TEST_CASE("pointing: the cell is represented by its centre point, box edges included", "[pointing]") {
  // 4x4 grid on 100x100: cell (1, 1) spans [25, 50)^2, centre (37.5, 37.5).
  const std::vector<std::vector<float>> look = {one_hot(4, 4, 1, 1)};
  // A box covering most of the cell but not its centre: a miss.
  CHECK_FALSE(point_caption(image(100, 100, {{"circle", 25, 25, 12, 24}}), {"circle"}, look, 4, 4, shapes())
                  .words[0]
                  .hit);
  // A box whose right edge passes exactly through the centre: a hit (edges included).
  CHECK(point_caption(image(100, 100, {{"circle", 30, 30, 7.5, 7.5}}), {"circle"}, look, 4, 4, shapes()).words[0].hit);
  // A tiny box around the centre only: a hit.
  CHECK(point_caption(image(100, 100, {{"circle", 37, 37, 1, 1}}), {"circle"}, look, 4, 4, shapes()).words[0].hit);
}

TEST_CASE("pointing: ties go to the lowest cell, non-finite weights never win", "[pointing]") {
  std::vector<float> a(16, 0.f);
  a[5] = 0.5f;
  a[10] = 0.5f;
  a[3] = std::nanf("");
  const ImagePointing p = point_caption(image(100, 100, {{"circle", 0, 0, 100, 100}}), {"circle"}, {a}, 4, 4, shapes());
  CHECK(p.words[0].cell == 5);
  CHECK(p.words[0].row == 1);
  CHECK(p.words[0].col == 1);
}

TEST_CASE("pointing: attention entropy in nats", "[pointing]") {
  CHECK(attention_entropy(std::vector<float>(196, 1.f / 196)) == Approx(std::log(196.0)));
  CHECK(attention_entropy(one_hot(14, 14, 3, 4)) == Approx(0.0).margin(1e-12));
  CHECK(attention_entropy({0.5f, 0.5f, 0.f, 0.f}) == Approx(std::log(2.0)));
  // Unnormalised rows are normalised; negative and NaN weights count as 0; all-zero gives 0.
  CHECK(attention_entropy({2.f, 2.f, -1.f, std::nanf("")}) == Approx(std::log(2.0)));
  CHECK(attention_entropy({0.f, 0.f}) == 0.0);
  const ImagePointing s = attention_statistics({{0.5f, 0.5f}, {1.f, 0.f}});
  CHECK(s.entropy_words == 2);
  CHECK(s.entropy_sum == Approx(std::log(2.0)));
}

TEST_CASE("pointing: the tally is a micro average over counted words", "[pointing]") {
  const ImageObjects img = image(100, 100, {{"circle", 0, 0, 30, 30}, {"square", 60, 60, 40, 40}});
  PointingTally tally;
  tally.add(point_caption(img, {"circle", "square"}, {one_hot(4, 4, 0, 0), one_hot(4, 4, 0, 0)}, 4, 4, shapes()));
  tally.add(point_caption(img, {"circle"}, {one_hot(4, 4, 0, 0)}, 4, 4, shapes()));
  tally.add(attention_statistics({std::vector<float>(16, 1.f / 16)}));
  CHECK(tally.images() == 3);
  CHECK(tally.counted() == 3);
  CHECK(tally.hits() == 2);
  REQUIRE(tally.pointing().has_value());
  CHECK(*tally.pointing() == Approx(2.0 / 3));
  CHECK(tally.per_class().at("circle") == std::make_pair(2, 2));
  CHECK(tally.per_class().at("square") == std::make_pair(1, 0));
  // Entropy: 3 one-hot words (0) and one uniform word (ln 16), over 4 words.
  CHECK(*tally.entropy() == Approx(std::log(16.0) / 4));
  // Chance: circle 1/16 twice, square: centres 62.5 and 87.5 in [60, 100] -> 4 cells.
  CHECK(*tally.chance() == Approx((1.0 / 16 + 1.0 / 16 + 4.0 / 16) / 3));
}

TEST_CASE("pointing: mismatched pieces are caller bugs (invalid_argument)", "[pointing]") {
  const ImageObjects img = image(100, 100, {{"circle", 0, 0, 30, 30}});
  CHECK_THROWS_AS(point_caption(img, {"circle", "a"}, {one_hot(4, 4, 0, 0)}, 4, 4, shapes()), std::invalid_argument);
  CHECK_THROWS_AS(point_caption(img, {"circle"}, {std::vector<float>(15, 0.f)}, 4, 4, shapes()), std::invalid_argument);
  CHECK_THROWS_AS(point_caption(img, {"circle"}, {one_hot(4, 4, 0, 0)}, 0, 4, shapes()), std::invalid_argument);
  CHECK_THROWS_AS(point_caption(image(0, 100, {}), {"circle"}, {one_hot(4, 4, 0, 0)}, 4, 4, shapes()),
                  std::invalid_argument);
}

TEST_CASE("pointing: the lexicon maps words to classes (plurals, multi-word names, synonyms)", "[pointing]") {
  SECTION("plurals") {
    CHECK(plural_forms("dog") == std::vector<std::string>{"dogs"});
    CHECK(plural_forms("bus") == std::vector<std::string>{"buses"});
    CHECK(plural_forms("box") == std::vector<std::string>{"boxes"});
    CHECK(plural_forms("city") == std::vector<std::string>{"cities"});
    CHECK(plural_forms("toy") == std::vector<std::string>{"toys"});
    CHECK(plural_forms("knife") == std::vector<std::string>{"knives"});
    CHECK(plural_forms("man") == std::vector<std::string>{"men"});
    CHECK(plural_forms("sheep") == std::vector<std::string>{"sheep"});
  }
  SECTION("multi-word names: joined token and head noun; exact names beat heads") {
    const ClassLexicon lex({"dog", "hot dog", "traffic light"}, {}, false);
    CHECK(lex.class_of("dog") == std::optional<std::string>("dog"));
    CHECK(lex.class_of("dogs") == std::optional<std::string>("dog"));
    CHECK(lex.class_of("hotdog") == std::optional<std::string>("hot dog"));
    CHECK(lex.class_of("light") == std::optional<std::string>("traffic light"));
    CHECK(lex.class_of("lights") == std::optional<std::string>("traffic light"));
    CHECK(lex.class_of("Traffic-Light") == std::optional<std::string>("traffic light"));
    CHECK_FALSE(lex.class_of("traffic").has_value());
    CHECK_FALSE(lex.class_of("cat").has_value());
  }
  SECTION("two heads alike are ambiguous and name nothing") {
    const ClassLexicon lex({"tennis ball", "sports ball"}, {}, false);
    CHECK_FALSE(lex.class_of("ball").has_value());
    CHECK(lex.class_of("tennisball") == std::optional<std::string>("tennis ball"));
  }
  SECTION("a synonyms table adds words and overrides the other tiers") {
    const ClassLexicon lex({"person", "dog", "tshirt"}, {{"tshirt", {"t-shirt", "tee"}}, {"person", {"dog"}}}, true);
    CHECK(lex.class_of("tees") == std::optional<std::string>("tshirt"));
    CHECK(lex.class_of("tshirt") == std::optional<std::string>("tshirt"));
    CHECK(lex.class_of("dog") == std::optional<std::string>("person"));  // the user's word wins
    CHECK(lex.class_of("women") == std::optional<std::string>("person"));  // built-in COCO synonyms
    CHECK_THROWS_AS(ClassLexicon({"dog"}, {{"cat", {"kitten"}}}), UsageError);
    CHECK_THROWS_AS(ClassLexicon({"dog", "cat"}, {{"cat", {"pet"}}, {"dog", {"pet"}}}), UsageError);
  }
  SECTION("the built-in COCO table gives every word to its own class") {
    std::vector<std::string> coco;
    for (const auto& [cls, words] : coco_synonyms()) coco.push_back(cls);
    for (const char* more : {"fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
                             "carrot", "pizza", "cake", "chair", "bed", "toilet", "mouse", "remote", "keyboard",
                             "microwave", "oven", "toaster", "sink", "book", "clock", "vase", "scissors",
                             "toothbrush", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
                             "frisbee", "snowboard", "kite", "skateboard", "surfboard", "bottle", "bench"})
      coco.push_back(more);
    const ClassLexicon lex(coco);
    for (const auto& [cls, words] : coco_synonyms()) {
      for (const auto& w : words) {
        INFO(cls << ": " << w);
        CHECK(lex.class_of(w) == std::optional<std::string>(cls));
      }
    }
    CHECK(lex.class_of("bear") == std::optional<std::string>("bear"));      // not "teddy bear"
    CHECK(lex.class_of("teddy") == std::optional<std::string>("teddy bear"));
    CHECK(lex.class_of("people") == std::optional<std::string>("person"));
    CHECK(lex.class_of("knives") == std::optional<std::string>("knife"));
  }
}

TEST_CASE("pointing: COCO instances are read, bad ones refused naming the entry", "[pointing]") {
  const auto dir = fresh_temp_dir("pointing_instances");
  nlohmann::json j = {
      {"images", {{{"id", 1}, {"width", 640}, {"height", 480}}, {{"id", 2}, {"width", 100}, {"height", 100}}}},
      {"categories", {{{"id", 1}, {"name", "person"}}, {{"id", 18}, {"name", "dog"}}}},
      {"annotations",
       {{{"image_id", 1}, {"category_id", 18}, {"bbox", {10.5, 20, 30, 40}}},
        {{"image_id", 1}, {"category_id", 1}, {"bbox", {0, 0, 5, 5}}},
        {{"image_id", 1}, {"category_id", 1}, {"bbox", {0, 0, 0, 5}}},    // empty: skipped
        {{"image_id", 9}, {"category_id", 1}, {"bbox", {0, 0, 5, 5}}}}}};  // unknown image: skipped
  write_text_file(dir / "ok.json", j.dump());
  const Instances inst = load_instances(dir / "ok.json");
  CHECK(inst.categories == std::vector<std::string>{"person", "dog"});
  REQUIRE(inst.images.size() == 2);
  const ImageObjects& one = inst.images.at(1);
  CHECK(one.width == 640);
  CHECK(one.height == 480);
  REQUIRE(one.boxes.size() == 2);
  CHECK(one.boxes[0].category == "dog");
  CHECK(one.boxes[0].x == 10.5);
  CHECK(one.boxes[0].height == 40);
  CHECK(inst.images.at(2).boxes.empty());
  CHECK(inst.warnings.size() == 2);
  // COCO's own order (images, annotations, categories last) reads the same: the file is streamed
  // and annotations are resolved once the categories are known.
  write_text_file(dir / "coco_order.json", "{\"images\": " + j["images"].dump() + ", \"annotations\": " +
                                               j["annotations"].dump() + ", \"categories\": " + j["categories"].dump() + "}");
  const Instances ordered = load_instances(dir / "coco_order.json");
  CHECK(ordered.categories == inst.categories);
  REQUIRE(ordered.warnings.size() == inst.warnings.size());
  for (std::size_t k = 0; k < inst.warnings.size(); ++k)  // the same, but for the file's name
    CHECK(ordered.warnings[k].substr(ordered.warnings[k].find(": ")) == inst.warnings[k].substr(inst.warnings[k].find(": ")));
  REQUIRE(ordered.images.at(1).boxes.size() == 2);
  CHECK(ordered.images.at(1).boxes[0].category == "dog");
  CHECK(ordered.images.at(1).boxes[1].width == 5);

  auto refused = [&](nlohmann::json bad, const std::string& needle) {
    write_text_file(dir / "bad.json", bad.dump());
    try {
      load_instances(dir / "bad.json");
      FAIL("no error for " << needle);
    } catch (const InputError& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
  };
  nlohmann::json b = j;
  b["annotations"][1]["bbox"] = {1, 2, 3};
  refused(b, "annotations[1]");
  b = j;
  b["annotations"][0]["category_id"] = 77;
  refused(b, "category_id 77");
  b = j;
  b["images"][1]["id"] = 1;
  refused(b, "images[1]");
  b = j;
  b.erase("categories");
  refused(b, "\"categories\"");
  write_text_file(dir / "bad.json", "{\"images\": [");
  CHECK_THROWS_AS(load_instances(dir / "bad.json"), InputError);
  CHECK_THROWS_AS(load_instances(dir / "missing.json"), InputError);
}

TEST_CASE("pointing: synonyms files, plain or versioned", "[pointing]") {
  const auto dir = fresh_temp_dir("pointing_synonyms");
  write_text_file(dir / "plain.json", R"({"tshirt": ["tee", "t-shirt"]})");
  CHECK(load_synonyms(dir / "plain.json").at("tshirt") == std::vector<std::string>{"tee", "t-shirt"});
  write_text_file(dir / "versioned.json", R"({"format_version": 1, "synonyms": {"dog": ["puppy"]}})");
  CHECK(load_synonyms(dir / "versioned.json").at("dog") == std::vector<std::string>{"puppy"});
  write_text_file(dir / "newer.json", R"({"format_version": 2, "synonyms": {}})");
  CHECK_THROWS_AS(load_synonyms(dir / "newer.json"), InputError);
  write_text_file(dir / "bad.json", R"({"dog": "puppy"})");
  CHECK_THROWS_AS(load_synonyms(dir / "bad.json"), InputError);
}
