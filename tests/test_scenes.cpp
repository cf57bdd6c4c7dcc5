// The scenes generator: determinism, boxes against the pixels written, captions against the
// boxes, and the three JSON files against each other. Images are read back from disk.
#include "testing.h"

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "satcap/data/image.h"
#include "satcap/data/scenes.h"
#include "satcap/model/vocab.h"
#include "satcap/runtime/error.h"
#include "test_util.h"

using namespace satcap;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* kFashionDir = "/usr/share/datasets/fashion-mnist";

SceneOptions options_for(const fs::path& dir, int images, std::uint64_t seed, SceneObjects objects = SceneObjects::shapes) {
  SceneOptions o;
  o.out_dir = dir.string();
  o.images = images;
  o.seed = seed;
  o.objects = objects;
  o.fashion_dir = kFashionDir;
  return o;
}

json load_json(const fs::path& path) { return json::parse(read_text_file(path)); }

// Every file under `dir`, relative path -> bytes.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = read_text_file(e.path());
  }
  return files;
}

struct Truth {
  std::string category, colour, size;
  cv::Rect box;
  double cx() const { return box.x + box.width / 2.0; }
  double cy() const { return box.y + box.height / 2.0; }
};

// image id -> its objects, from instances.json.
std::map<int, std::vector<Truth>> objects_by_image(const json& instances) {
  std::map<int, std::string> names;
  for (const auto& c : instances["categories"]) names[c["id"].get<int>()] = c["name"].get<std::string>();
  std::map<int, std::vector<Truth>> out;
  for (const auto& a : instances["annotations"]) {
    Truth t;
    t.category = names.at(a["category_id"].get<int>());
    t.colour = a["attributes"]["colour"].get<std::string>();
    t.size = a["attributes"]["size"].get<std::string>();
    auto b = a["bbox"];
    t.box = cv::Rect(b[0].get<int>(), b[1].get<int>(), b[2].get<int>(), b[3].get<int>());
    out[a["image_id"].get<int>()].push_back(t);
  }
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

bool starts_with(const std::vector<std::string>& t, std::size_t at, const std::vector<std::string>& phrase) {
  if (at + phrase.size() > t.size()) return false;
  for (std::size_t i = 0; i < phrase.size(); ++i) {
    if (t[at + i] != phrase[i]) return false;
  }
  return true;
}

// Checks one caption against the image's objects (the grammar of datasets/README.md): every class
// word names an object of the image, with its colour before it and its size before that (or
// after, "that is small"); relation words between two mentions agree with the box centres;
// position words agree with the thirds of the image. Returns the indices of the objects named.
std::set<int> check_caption(const std::string& caption, const std::vector<Truth>& objs, int S, SceneObjects kind) {
  INFO("caption: " << caption);
  const auto& categories = scene_categories(kind);
  const auto& colours = scene_colours();
  const auto& sizes = scene_sizes();
  std::vector<std::string> t = tokenize_caption(caption);
  struct Mention {
    int object;
    std::size_t at;
  };
  std::vector<Mention> mentions;
  for (std::size_t k = 0; k < t.size(); ++k) {
    if (contains(colours, t[k])) {
      REQUIRE(k + 1 < t.size());
      REQUIRE(contains(categories, t[k + 1]));  // a colour always qualifies a class word
    }
    if (contains(sizes, t[k]) && !(k >= 2 && t[k - 2] == "that" && t[k - 1] == "is")) {
      REQUIRE(k + 1 < t.size());
      REQUIRE(contains(colours, t[k + 1]));  // a size comes before a colour
    }
    if (!contains(categories, t[k])) continue;
    auto it = std::find_if(objs.begin(), objs.end(), [&](const Truth& o) { return o.category == t[k]; });
    REQUIRE(it != objs.end());  // the class named is in the image
    const Truth& o = *it;
    REQUIRE(k >= 1);
    REQUIRE(t[k - 1] == o.colour);
    if (k >= 2 && contains(sizes, t[k - 2])) REQUIRE(t[k - 2] == o.size);
    if (starts_with(t, k + 1, {"that", "is"})) REQUIRE(t[k + 3] == o.size);
    // Position words right after the class.
    int row = o.cy() < S / 3.0 ? 0 : o.cy() < 2 * S / 3.0 ? 1 : 2;
    int col = o.cx() < S / 3.0 ? 0 : o.cx() < 2 * S / 3.0 ? 1 : 2;
    const char* rows[] = {"top", "middle", "bottom"};
    const char* cols[] = {"left", "center", "right"};
    if (starts_with(t, k + 1, {"in", "the"}) && k + 4 < t.size() && (t[k + 3] == "top" || t[k + 3] == "bottom")) {
      REQUIRE(t[k + 3] == rows[row]);
      REQUIRE(t[k + 4] == cols[col]);
    }
    if (starts_with(t, k + 1, {"in", "the", "middle"})) {
      REQUIRE(row == 1);
      REQUIRE(col == 1);
    }
    if (starts_with(t, k + 1, {"at", "the"})) {
      REQUIRE(k + 3 < t.size());
      REQUIRE(t[k + 3] == rows[row]);
      REQUIRE(col == 1);
    }
    if (starts_with(t, k + 1, {"on", "the"})) {
      REQUIRE(k + 3 < t.size());
      REQUIRE(t[k + 3] == cols[col]);
      REQUIRE(row == 1);
    }
    mentions.push_back({static_cast<int>(it - objs.begin()), k});
  }
  // Relations between consecutive mentions: "A to the left of a B", "A above a B", ...
  for (std::size_t m = 0; m + 1 < mentions.size(); ++m) {
    const Truth& a = objs[mentions[m].object];
    const Truth& b = objs[mentions[m + 1].object];
    std::size_t at = mentions[m].at + 1;
    double dx = b.cx() - a.cx(), dy = b.cy() - a.cy();
    if (starts_with(t, at, {"to", "the", "left", "of"})) {
      REQUIRE(dx > 0);
      REQUIRE(std::abs(dx) >= std::abs(dy));
    } else if (starts_with(t, at, {"to", "the", "right", "of"})) {
      REQUIRE(dx < 0);
      REQUIRE(std::abs(dx) >= std::abs(dy));
    } else if (starts_with(t, at, {"above"})) {
      REQUIRE(dy > 0);
      REQUIRE(std::abs(dy) > std::abs(dx));
    } else if (starts_with(t, at, {"below"})) {
      REQUIRE(dy < 0);
      REQUIRE(std::abs(dy) > std::abs(dx));
    }
  }
  std::set<int> named;
  for (const auto& m : mentions) named.insert(m.object);
  return named;
}

int linf(const cv::Vec3b& a, const cv::Vec3b& b) {
  return std::max({std::abs(a[0] - b[0]), std::abs(a[1] - b[1]), std::abs(a[2] - b[2])});
}

// The captions, instances and images of a generated folder, checked against each other.
void check_dataset(const fs::path& dir, int N, int S, SceneObjects kind) {
  json captions = load_json(dir / "captions.json");
  json instances = load_json(dir / "instances.json");
  json karpathy = load_json(dir / "dataset.json");

  // Images: the same list in all three files, ids 1..N, files present with the right size.
  REQUIRE(captions["images"].size() == static_cast<std::size_t>(N));
  REQUIRE(instances["images"] == captions["images"]);
  REQUIRE(karpathy["images"].size() == static_cast<std::size_t>(N));
  REQUIRE(karpathy["format_version"] == 1);
  std::set<int> image_ids;
  std::map<std::string, int> split_count;
  for (int i = 0; i < N; ++i) {
    const auto& im = captions["images"][i];
    const auto& k = karpathy["images"][i];
    image_ids.insert(im["id"].get<int>());
    REQUIRE(im["width"] == S);
    REQUIRE(im["height"] == S);
    REQUIRE(k["cocoid"] == im["id"]);
    REQUIRE(k["filename"] == im["file_name"]);
    REQUIRE(k["imgid"] == i);
    REQUIRE(fs::exists(dir / k["filepath"].get<std::string>() / k["filename"].get<std::string>()));
    split_count[k["split"].get<std::string>()]++;
  }
  REQUIRE(image_ids.size() == static_cast<std::size_t>(N));
  REQUIRE(split_count["train"] + split_count["val"] + split_count["test"] == N);
  if (N % 10 == 0) {
    REQUIRE(split_count["train"] == N * 8 / 10);
    REQUIRE(split_count["val"] == N / 10);
    REQUIRE(split_count["test"] == N / 10);
  }

  // Captions: five different ones per image, unique ids, the same sentences in dataset.json.
  std::map<int, std::vector<std::string>> caps;
  std::set<int> caption_ids;
  for (const auto& a : captions["annotations"]) {
    REQUIRE(image_ids.count(a["image_id"].get<int>()) == 1);
    REQUIRE(caption_ids.insert(a["id"].get<int>()).second);
    caps[a["image_id"].get<int>()].push_back(a["caption"].get<std::string>());
  }
  for (const auto& k : karpathy["images"]) {
    int id = k["cocoid"].get<int>();
    const auto& c = caps[id];
    REQUIRE(c.size() == 5);
    REQUIRE(std::set<std::string>(c.begin(), c.end()).size() == 5);
    REQUIRE(k["sentences"].size() == 5);
    REQUIRE(k["sentids"].size() == 5);
    for (std::size_t s = 0; s < 5; ++s) {
      const auto& sent = k["sentences"][s];
      REQUIRE(sent["raw"] == c[s]);
      REQUIRE(sent["tokens"].get<std::vector<std::string>>() == tokenize_caption(c[s]));
      REQUIRE(sent["imgid"] == k["imgid"]);
      REQUIRE(sent["sentid"] == k["sentids"][s]);
      REQUIRE(caption_ids.count(sent["sentid"].get<int>()) == 1);
    }
  }

  // Instances: categories as the vocabulary says, 1 to 3 objects per image, distinct classes,
  // boxes inside the image and apart from each other, areas within their boxes.
  const auto& categories = scene_categories(kind);
  REQUIRE(instances["categories"].size() == categories.size());
  for (std::size_t c = 0; c < categories.size(); ++c) {
    REQUIRE(instances["categories"][c]["id"] == static_cast<int>(c) + 1);
    REQUIRE(instances["categories"][c]["name"] == categories[c]);
  }
  std::set<int> object_ids;
  for (const auto& a : instances["annotations"]) {
    REQUIRE(object_ids.insert(a["id"].get<int>()).second);
    REQUIRE(a["iscrowd"] == 0);
    int w = a["bbox"][2].get<int>(), h = a["bbox"][3].get<int>();
    REQUIRE(a["area"].get<int>() > 0);
    REQUIRE(a["area"].get<int>() <= w * h);
  }
  auto objects = objects_by_image(instances);
  REQUIRE(objects.size() == static_cast<std::size_t>(N));

  for (const auto& im : captions["images"]) {
    const int id = im["id"].get<int>();
    const auto& objs = objects[id];
    INFO("image " << im["file_name"].get<std::string>());
    REQUIRE(objs.size() >= 1);
    REQUIRE(objs.size() <= 3);
    cv::Mat rgb = read_image_rgb(dir / "images" / im["file_name"].get<std::string>());
    REQUIRE(rgb.cols == S);
    REQUIRE(rgb.rows == S);
    for (std::size_t i = 0; i < objs.size(); ++i) {
      const Truth& o = objs[i];
      REQUIRE((o.box & cv::Rect(0, 0, S, S)) == o.box);
      for (std::size_t j = 0; j < i; ++j) {
        REQUIRE(o.category != objs[j].category);
        REQUIRE((o.box & objs[j].box).area() == 0);
      }
      int side = std::max(o.box.width, o.box.height);
      if (o.size == "small") REQUIRE(side <= 0.23 * S);
      if (kind == SceneObjects::shapes && o.size == "large") REQUIRE(side >= 0.26 * S);
      // The box holds the named colour (shapes: flat colour; fashion: colour times a shade).
      cv::Vec3b named = scene_colour_rgb(o.colour);
      std::vector<cv::Vec3b> targets;
      for (double shade : kind == SceneObjects::shapes ? std::vector<double>{1.0} : std::vector<double>{0.7, 0.8, 0.9, 1.0}) {
        targets.emplace_back(cv::saturate_cast<uchar>(named[0] * shade), cv::saturate_cast<uchar>(named[1] * shade),
                             cv::saturate_cast<uchar>(named[2] * shade));
      }
      int close = 0, edge_hits[4] = {0, 0, 0, 0};
      for (int y = o.box.y; y < o.box.y + o.box.height; ++y) {
        for (int x = o.box.x; x < o.box.x + o.box.width; ++x) {
          cv::Vec3b p = rgb.at<cv::Vec3b>(y, x);
          bool hit = std::any_of(targets.begin(), targets.end(), [&](const cv::Vec3b& c) { return linf(p, c) <= 30; });
          if (!hit) continue;
          ++close;
          if (x < o.box.x + 4) edge_hits[0]++;
          if (x >= o.box.x + o.box.width - 4) edge_hits[1]++;
          if (y < o.box.y + 4) edge_hits[2]++;
          if (y >= o.box.y + o.box.height - 4) edge_hits[3]++;
        }
      }
      double fraction = static_cast<double>(close) / o.box.area();
      INFO(o.size << " " << o.colour << " " << o.category << " at " << o.box << ": " << fraction);
      REQUIRE(fraction >= (kind == SceneObjects::shapes ? 0.3 : 0.15));
      if (kind == SceneObjects::shapes) {  // the box is tight: the colour reaches each of its four sides
        for (int e : edge_hits) REQUIRE(e > 0);
      }
    }
    // Away from the boxes lies only background: no pixel of a named colour there.
    if (kind == SceneObjects::shapes) {
      int stray = 0, outside = 0;
      for (int y = 0; y < S; ++y) {
        for (int x = 0; x < S; ++x) {
          bool inside = std::any_of(objs.begin(), objs.end(), [&](const Truth& o) {
            return cv::Rect(o.box.x - 2, o.box.y - 2, o.box.width + 4, o.box.height + 4).contains({x, y});
          });
          if (inside) continue;
          ++outside;
          cv::Vec3b p = rgb.at<cv::Vec3b>(y, x);
          for (const auto& c : scene_colours()) {
            if (linf(p, scene_colour_rgb(c)) <= 30) {
              ++stray;
              break;
            }
          }
        }
      }
      REQUIRE(stray <= outside / 200);
    }
    // The captions name what is there, every object at least once, relations right.
    std::set<int> named;
    for (const auto& c : caps[id]) {
      auto n = check_caption(c, objs, S, kind);
      named.insert(n.begin(), n.end());
    }
    REQUIRE(named.size() == objs.size());
  }
}

}  // namespace

TEST_CASE("scene options are validated", "[scenes]") {
  SceneOptions o = options_for("x", 10, 1);
  REQUIRE_NOTHROW(validate(o));
  o.images = 0;
  REQUIRE_THROWS_WITH(validate(o), Catch::Contains("--images"));
  REQUIRE_THROWS_WITH(parse_enum<SceneObjects>("cats", "--objects"), Catch::Contains("--objects"));
  o = options_for("x", 10, 1);
  o.size = 16;
  REQUIRE_THROWS_WITH(validate(o), Catch::Contains("--size"));
  o = options_for("", 10, 1);
  REQUIRE_THROWS_AS(validate(o), UsageError);
}

TEST_CASE("the same seed gives the same bytes, whatever the threads, another seed other bytes", "[scenes]") {
  fs::path base = fresh_temp_dir("scenes_determinism");
  SceneOptions a = options_for(base / "a", 12, 42);
  a.threads = 1;
  SceneOptions b = options_for(base / "b", 12, 42);
  b.threads = 3;
  SceneOptions c = options_for(base / "c", 12, 43);
  generate_scenes(a);
  generate_scenes(b);
  generate_scenes(c);
  auto fa = snapshot(base / "a"), fb = snapshot(base / "b"), fc = snapshot(base / "c");
  REQUIRE(fa.size() == 3 + 12);
  REQUIRE(fa == fb);
  REQUIRE(fa.size() == fc.size());
  for (const auto& [name, bytes] : fa) {
    if (name.find(".png") != std::string::npos) {
      INFO(name);
      REQUIRE(bytes != fc[name]);
    }
  }
  REQUIRE(fa["captions.json"] != fc["captions.json"]);
  // make_scene alone gives the pixels that were written.
  Scene s = make_scene(a, 3);
  REQUIRE(cv::norm(s.rgb, read_image_rgb(base / "a/images/scene_000004.png"), cv::NORM_INF) == 0);
}

TEST_CASE("shape scenes: boxes, colours, captions and the three files agree", "[scenes]") {
  fs::path dir = fresh_temp_dir("scenes_shapes") / "data";
  auto summary = generate_scenes(options_for(dir, 60, 7));
  REQUIRE(summary.images == 60);
  REQUIRE(summary.captions == 300);
  check_dataset(dir, 60, 224, SceneObjects::shapes);
}

TEST_CASE("shape scenes at another size", "[scenes]") {
  fs::path dir = fresh_temp_dir("scenes_size") / "data";
  SceneOptions o = options_for(dir, 10, 5);
  o.size = 96;
  generate_scenes(o);
  check_dataset(dir, 10, 96, SceneObjects::shapes);
}

TEST_CASE("fashion scenes paste Fashion-MNIST items, named by their label", "[scenes]") {
  if (!fs::exists(fs::path(kFashionDir) / "train-images-idx3-ubyte.gz")) {
    WARN("Fashion-MNIST not installed (Debian package dataset-fashion-mnist): skipped");
    return;
  }
  fs::path dir = fresh_temp_dir("scenes_fashion") / "data";
  generate_scenes(options_for(dir, 20, 3, SceneObjects::fashion));
  check_dataset(dir, 20, 224, SceneObjects::fashion);
}

TEST_CASE("the scenes command refuses bad options and a non-empty folder, and --force replaces", "[scenes]") {
  fs::path base = fresh_temp_dir("scenes_cli");
  fs::path out = base / "out";
  // (Each run starts the binary, which loads LibTorch: a few runs only; validate() covers the rest.)
  auto r = run_satcap({"scenes", "--out", out.string(), "--images", "0"});
  REQUIRE(r.exit_code == 2);
  r = run_satcap({"scenes", "--out", out.string(), "--objects", "fashion", "--fashion-dir", (base / "none").string()});
  REQUIRE(r.exit_code == 3);
  REQUIRE_THAT(r.err, Catch::Contains("dataset-fashion-mnist"));

  r = run_satcap({"-q", "scenes", "--out", out.string(), "--images", "5", "--seed", "2"});
  REQUIRE(r.exit_code == 0);
  REQUIRE(fs::exists(out / "images/scene_000005.png"));
  r = run_satcap({"scenes", "--out", out.string(), "--images", "3"});
  REQUIRE(r.exit_code == 2);
  REQUIRE_THAT(r.err, Catch::Contains("--force"));
  r = run_satcap({"-q", "scenes", "--out", out.string(), "--images", "3", "--force"});
  REQUIRE(r.exit_code == 0);
  REQUIRE_FALSE(fs::exists(out / "images/scene_000004.png"));  // no stale images left behind
  REQUIRE(load_json(out / "captions.json")["images"].size() == 3);
  for (const auto& e : fs::directory_iterator(out)) REQUIRE(e.path().string().find(".tmp-") == std::string::npos);
}
