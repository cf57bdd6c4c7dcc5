// The synthetic scenes (see scenes.h): the vocabularies, one scene from its index (objects chosen,
// placed without overlap, drawn and captioned), and the data set written with several threads. The
// pixels are drawn by scene_drawing.cpp, the captions by scene_captions.cpp, and Fashion-MNIST is
// read by fashion_mnist.cpp.
#include "satcap/data/scenes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include "data/scene_captions.h"
#include "data/scene_drawing.h"
#include "data/scene_random.h"
#include "satcap/data/fashion_mnist.h"
#include "satcap/model/vocab.h"  // tokenize_caption: the tokens dataset.json stores
#include "satcap/runtime/atomic_file.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/runtime.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace satcap {

// ---------------------------------------------------------------------------------------------
// Vocabulary

namespace {

constexpr int kFormatVersion = 1;

const std::vector<std::string> kShapes = {"circle", "square", "triangle", "star", "diamond", "hexagon", "cross", "heart"};
// Fashion-MNIST's labels 0..9, each made one token.
const std::vector<std::string> kFashion = {"tshirt", "trouser", "pullover", "dress", "coat",
                                           "sandal", "shirt",   "sneaker",  "bag",   "boot"};
const std::vector<std::string> kColours = {"red", "green", "blue", "yellow", "purple", "orange", "white", "black"};
const cv::Vec3b kColourRgb[] = {{220, 30, 30},  {40, 170, 60},  {40, 70, 220},   {240, 220, 40},
                                {140, 50, 180}, {245, 140, 20}, {245, 245, 245}, {20, 20, 20}};
const std::vector<std::string> kSizes = {"small", "large"};

// Object extent (the side of the square it is drawn in) as a fraction of the image side.
constexpr double kSmallMin = 0.16, kSmallMax = 0.22, kLargeMin = 0.32, kLargeMax = 0.40;

}  // namespace

void validate(const SceneOptions& o) {
  if (o.out_dir.empty()) throw UsageError("--out: an output folder is required");
  if (o.images < 1 || o.images > 1'000'000) {
    throw UsageError("--images must be between 1 and 1000000 (got " + std::to_string(o.images) + ")");
  }
  if (o.size < 64 || o.size > 2048) {
    throw UsageError("--size must be between 64 and 2048 pixels (got " + std::to_string(o.size) + ")");
  }
  validate_threads(o.threads);
}

const std::vector<std::string>& scene_categories(SceneObjects objects) {
  return objects == SceneObjects::fashion ? kFashion : kShapes;
}
const std::vector<std::string>& scene_colours() { return kColours; }
const std::vector<std::string>& scene_sizes() { return kSizes; }

cv::Vec3b scene_colour_rgb(const std::string& colour) {
  for (std::size_t i = 0; i < kColours.size(); ++i) {
    if (kColours[i] == colour) return kColourRgb[i];
  }
  throw UsageError("unknown scene colour '" + colour + "'");
}

std::string scene_split(int index) {
  int r = index % 10;
  return r < 8 ? "train" : r == 8 ? "val" : "test";
}

// ---------------------------------------------------------------------------------------------
// One scene

namespace {

// One object being placed, and the square it is drawn in.
struct Placed {
  SceneObject object;
  cv::Rect square;
};

}  // namespace

Scene make_scene(const SceneOptions& options, int index, const FashionMnist* fashion) {
  const int S = options.size;
  const bool fashion_mode = options.objects == SceneObjects::fashion;
  if (fashion_mode && fashion == nullptr) throw UsageError("make_scene: fashion mode needs the Fashion-MNIST data");
  const auto& categories = scene_categories(options.objects);
  Rng rng(options.seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(index) + (fashion_mode ? 0x5EED : 0));

  Scene scene;
  scene.rgb = make_background(rng, S);

  int n = rng.integer(1, 3);
  std::vector<int> cats(categories.size());
  for (std::size_t i = 0; i < cats.size(); ++i) cats[i] = static_cast<int>(i);
  rng.shuffle(cats);

  const int margin = std::max(2, S / 50), gap = std::max(4, S / 40);
  std::vector<Placed> placed;
  for (int k = 0; k < n; ++k) {
    Placed p;
    p.object.category_id = cats[k] + 1;
    p.object.category = categories[cats[k]];
    p.object.colour = kColours[rng.integer(0, static_cast<int>(kColours.size()) - 1)];
    bool large = rng.chance(0.5);
    bool ok = false;
    for (int attempt = 0; attempt < 2 && !ok; ++attempt) {
      double frac = large ? rng.uniform(kLargeMin, kLargeMax) : rng.uniform(kSmallMin, kSmallMax);
      int side = static_cast<int>(std::lround(frac * S));
      for (int tries = 0; tries < 200 && !ok; ++tries) {
        cv::Rect sq(rng.integer(margin, S - side - margin), rng.integer(margin, S - side - margin), side, side);
        ok = std::none_of(placed.begin(), placed.end(), [&](const Placed& q) {
          cv::Rect grown(q.square.x - gap, q.square.y - gap, q.square.width + 2 * gap, q.square.height + 2 * gap);
          return (grown & sq).area() > 0;
        });
        if (ok) p.square = sq;
      }
      if (!ok) large = false;  // no room for a large one: try a small one
    }
    if (!ok) continue;  // no room at all: the scene has fewer objects
    p.object.size = large ? "large" : "small";
    placed.push_back(p);
  }

  for (auto& p : placed) {
    const int side = p.square.width;
    cv::Vec3b base = scene_colour_rgb(p.object.colour);
    cv::Vec3i tint(base[0] + rng.integer(-12, 12), base[1] + rng.integer(-12, 12), base[2] + rng.integer(-12, 12));
    ObjectLayers layers;
    if (!fashion_mode) {
      layers = paint_shape(rng, p.object.category, side, tint);
    } else {
      const std::string split = scene_split(index);
      const FashionMnist::Set& set = split == "train" ? fashion->train : fashion->test;
      const auto& items = set.by_label[p.object.category_id - 1];
      int item = items[rng.integer(0, static_cast<int>(items.size()) - 1)];
      cv::Mat photo(28, 28, CV_8UC1, const_cast<std::uint8_t*>(set.pixels.data()) + static_cast<std::size_t>(item) * 784);
      layers = paint_photo(photo, side, tint);
    }
    p.object.box = composite(scene.rgb, layers, p.square, p.object.area);
    if (p.object.box.area() > 0) scene.objects.push_back(p.object);
  }
  if (scene.objects.empty()) throw std::logic_error("make_scene: no object could be placed");
  scene.captions = make_captions(rng, scene.objects, S);
  return scene;
}

// ---------------------------------------------------------------------------------------------
// Writing the data set

namespace {

void write_json(const fs::path& path, const json& j) {
  write_file_atomic(path, j.dump(1) + "\n", ParentDirs::must_exist);
}

std::string image_file_name(int index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "scene_%06d.png", index + 1);
  return buf;
}

bool is_own_image(const fs::path& p) {
  std::string name = p.filename().string();
  return name.size() == 16 && name.rfind("scene_", 0) == 0 && p.extension() == ".png";
}

// Creates the output folder; refuses a non-empty one unless `force`, and then removes this
// generator's own files (the JSON files first, then the images) from it (so a smaller data set leaves no stale images behind).
void prepare_output(const SceneOptions& o) {
  fs::path dir(o.out_dir);
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) throw UsageError("--out " + o.out_dir + ": exists and is not a folder");
  if (fs::is_directory(dir, ec) && !fs::is_empty(dir, ec) && !o.force) {
    throw UsageError("--out " + o.out_dir + ": folder is not empty; pass --force to write into it");
  }
  // A previous data set here is replaced: its completeness marker (captions.json, written last)
  // goes first, so a run that fails half-way (full disk) never leaves old annotations beside
  // new images looking like a complete data set.
  for (const char* file : {"captions.json", "dataset.json", "instances.json"}) {
    if (!fs::remove(dir / file, ec) && ec && ec != std::errc::no_such_file_or_directory) {
      throw OutputError((dir / file).string() + ": cannot remove the previous data set's file (" + ec.message() + ")");
    }
  }
  ec.clear();
  fs::create_directories(dir / "images", ec);
  if (ec) throw OutputError(o.out_dir + ": cannot create folder (" + ec.message() + ")");
  for (auto it = fs::directory_iterator(dir / "images", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (is_own_image(it->path())) fs::remove(it->path(), ec);
  }
  if (ec) throw OutputError(o.out_dir + "/images: " + ec.message());
}

}  // namespace

ScenesSummary generate_scenes(const SceneOptions& options, const std::function<void(int)>& progress) {
  validate(options);
  auto start = std::chrono::steady_clock::now();
  std::shared_ptr<const FashionMnist> fashion;
  if (options.objects == SceneObjects::fashion) fashion = load_fashion_mnist(options.fashion_dir);
  prepare_output(options);
  const fs::path dir(options.out_dir);

  const int N = options.images;
  std::vector<std::vector<SceneObject>> objects(N);
  std::vector<std::vector<std::string>> captions(N);
  std::atomic<int> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex mutex;
  auto work = [&] {
    while (!failed) {
      int i = next++;
      if (i >= N) break;
      try {
        Scene s = make_scene(options, i, fashion.get());
        cv::Mat bgr;
        cv::cvtColor(s.rgb, bgr, cv::COLOR_RGB2BGR);
        std::vector<std::uint8_t> png;
        if (!cv::imencode(".png", bgr, png)) throw OutputError(image_file_name(i) + ": PNG encoding failed");
        AtomicFile image(dir / "images" / image_file_name(i), ParentDirs::must_exist, Durability::later);
        image.write(png.data(), png.size());
        image.commit();
        objects[i] = std::move(s.objects);
        captions[i] = std::move(s.captions);
        int d = ++done;
        if (progress && (d % 100 == 0 || d == N)) {
          std::lock_guard<std::mutex> lock(mutex);
          progress(d);
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
        failed = true;
      }
    }
  };
  int threads = options.threads > 0 ? options.threads : available_cores();
  threads = std::max(1, std::min(threads, N));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  // The images reach the disk before the files that point at them.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::syncfs(dfd);
    ::close(dfd);
  }

  const auto& categories = scene_categories(options.objects);
  const std::string object_kind = enum_name(options.objects);
  json info = {{"description", "satcap synthetic scenes (" + object_kind + ")"},
               {"format_version", kFormatVersion},
               {"generator", "satcap scenes"},
               {"seed", options.seed},
               {"objects", object_kind},
               {"size", options.size},
               {"images", N}};
  json images = json::array(), caption_anns = json::array(), instance_anns = json::array(), karpathy = json::array();
  int caption_id = 0, object_id = 0;
  for (int i = 0; i < N; ++i) {
    const int image_id = i + 1;
    const std::string file = image_file_name(i);
    images.push_back({{"id", image_id}, {"file_name", file}, {"width", options.size}, {"height", options.size}});
    json sentences = json::array(), sentids = json::array();
    for (const auto& c : captions[i]) {
      ++caption_id;
      caption_anns.push_back({{"id", caption_id}, {"image_id", image_id}, {"caption", c}});
      sentences.push_back({{"tokens", tokenize_caption(c)}, {"raw", c}, {"imgid", i}, {"sentid", caption_id}});
      sentids.push_back(caption_id);
    }
    for (const auto& o : objects[i]) {
      ++object_id;
      instance_anns.push_back({{"id", object_id},
                               {"image_id", image_id},
                               {"category_id", o.category_id},
                               {"bbox", {o.box.x, o.box.y, o.box.width, o.box.height}},
                               {"area", o.area},
                               {"iscrowd", 0},
                               {"attributes", {{"colour", o.colour}, {"size", o.size}}}});
    }
    karpathy.push_back({{"filepath", "images"},
                        {"filename", file},
                        {"imgid", i},
                        {"cocoid", image_id},
                        {"split", scene_split(i)},
                        {"sentences", sentences},
                        {"sentids", sentids}});
  }
  json cats = json::array();
  for (std::size_t c = 0; c < categories.size(); ++c) {
    cats.push_back({{"id", static_cast<int>(c) + 1}, {"name", categories[c]}, {"supercategory", options.objects == SceneObjects::shapes ? "shape" : "clothing"}});
  }
  write_json(dir / "instances.json", {{"info", info}, {"images", images}, {"annotations", instance_anns}, {"categories", cats}});
  write_json(dir / "dataset.json", {{"dataset", "satcap-scenes"}, {"format_version", kFormatVersion}, {"info", info}, {"images", karpathy}});
  // Written last: a folder with captions.json is a complete data set.
  write_json(dir / "captions.json", {{"info", info}, {"images", images}, {"annotations", caption_anns}});

  ScenesSummary summary;
  summary.images = N;
  summary.objects = object_id;
  summary.captions = caption_id;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace satcap
