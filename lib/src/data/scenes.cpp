#include "satcap/data/scenes.h"
#include "satcap/model/vocab.h"  // tokenize_caption: the tokens dataset.json stores

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

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

#include "satcap/runtime/error.h"
#include "satcap/runtime/runtime.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace satcap {

// ---------------------------------------------------------------------------------------------
// Vocabulary

namespace {

constexpr int kFormatVersion = 1;
constexpr double kPi = 3.14159265358979323846;

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

// ---------------------------------------------------------------------------------------------
// A deterministic random generator: xoshiro256** seeded by splitmix64, with its own uniform
// draws (std:: distributions differ between standard libraries).

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    for (auto& v : s_) v = splitmix64(seed);
  }
  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [lo, hi].
  int integer(int lo, int hi) {
    auto range = static_cast<std::uint64_t>(hi - lo + 1);
    return lo + static_cast<int>((static_cast<unsigned __int128>(next()) * range) >> 64);
  }
  bool chance(double p) { return uniform() < p; }
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (int i = static_cast<int>(v.size()) - 1; i > 0; --i) std::swap(v[i], v[integer(0, i)]);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

std::uint8_t clamp8(int v) { return static_cast<std::uint8_t>(std::min(255, std::max(0, v))); }

}  // namespace

void validate(const SceneOptions& o) {
  if (o.out_dir.empty()) throw UsageError("--out: an output folder is required");
  if (o.images < 1 || o.images > 1'000'000) {
    throw UsageError("--images must be between 1 and 1000000 (got " + std::to_string(o.images) + ")");
  }
  if (o.objects != "shapes" && o.objects != "fashion") {
    throw UsageError("--objects must be shapes or fashion (got '" + o.objects + "')");
  }
  if (o.size < 64 || o.size > 2048) {
    throw UsageError("--size must be between 64 and 2048 pixels (got " + std::to_string(o.size) + ")");
  }
  validate_threads(o.threads);
}

const std::vector<std::string>& scene_categories(const std::string& objects) {
  if (objects == "shapes") return kShapes;
  if (objects == "fashion") return kFashion;
  throw UsageError("--objects must be shapes or fashion (got '" + objects + "')");
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
// Fashion-MNIST (IDX files, gzip-compressed)

class FashionMnist {
 public:
  struct Set {
    std::vector<std::uint8_t> pixels;           // [n, 28, 28]
    std::vector<std::vector<int>> by_label;     // item indices of each label 0..9
    int count = 0;
  };
  Set train, test;
};

namespace {

std::vector<std::uint8_t> gunzip_file(const fs::path& path) {
  const std::string hint = " (Fashion-MNIST: install the Debian package dataset-fashion-mnist or pass --fashion-dir)";
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw InputError(path.string() + ": no such file" + hint);
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw InputError(path.string() + ": cannot open" + hint);
  std::vector<std::uint8_t> out;
  std::uint8_t buf[1 << 16];
  while (true) {
    int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      throw InputError(path.string() + ": cannot decompress (" + msg + ")");
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  gzclose(f);
  return out;
}

std::uint32_t be32(const std::vector<std::uint8_t>& d, std::size_t i) {
  return (std::uint32_t{d[i]} << 24) | (std::uint32_t{d[i + 1]} << 16) | (std::uint32_t{d[i + 2]} << 8) | d[i + 3];
}

FashionMnist::Set load_fashion_set(const fs::path& images_path, const fs::path& labels_path) {
  std::vector<std::uint8_t> images = gunzip_file(images_path), labels = gunzip_file(labels_path);
  if (images.size() < 16 || be32(images, 0) != 0x00000803 || be32(images, 8) != 28 || be32(images, 12) != 28) {
    throw InputError(images_path.string() + ": not an IDX file of 28x28 images");
  }
  if (labels.size() < 8 || be32(labels, 0) != 0x00000801) throw InputError(labels_path.string() + ": not an IDX label file");
  std::uint32_t n = be32(images, 4);
  if (be32(labels, 4) != n || labels.size() < 8 + std::size_t{n} || images.size() < 16 + std::size_t{n} * 784) {
    throw InputError(images_path.string() + ": image and label counts do not match, or the file is truncated");
  }
  FashionMnist::Set set;
  set.count = static_cast<int>(n);
  set.pixels.assign(images.begin() + 16, images.begin() + 16 + std::size_t{n} * 784);
  set.by_label.resize(10);
  for (std::uint32_t i = 0; i < n; ++i) {
    int label = labels[8 + i];
    if (label > 9) throw InputError(labels_path.string() + ": label " + std::to_string(label) + " out of range");
    set.by_label[label].push_back(static_cast<int>(i));
  }
  for (int c = 0; c < 10; ++c) {
    if (set.by_label[c].empty()) throw InputError(labels_path.string() + ": no item of label " + std::to_string(c));
  }
  return set;
}

}  // namespace

std::shared_ptr<const FashionMnist> load_fashion_mnist(const std::string& folder) {
  auto data = std::make_shared<FashionMnist>();
  fs::path dir(folder);
  data->train = load_fashion_set(dir / "train-images-idx3-ubyte.gz", dir / "train-labels-idx1-ubyte.gz");
  data->test = load_fashion_set(dir / "t10k-images-idx3-ubyte.gz", dir / "t10k-labels-idx1-ubyte.gz");
  return data;
}

// ---------------------------------------------------------------------------------------------
// Drawing

namespace {

// A muted, low-saturation colour: what backgrounds are made of, far from every named colour.
cv::Vec3i muted_colour(Rng& rng) {
  int base = rng.integer(100, 155);
  return {base + rng.integer(-15, 15), base + rng.integer(-15, 15), base + rng.integer(-15, 15)};
}

double smoothstep(double t) { return t * t * (3 - 2 * t); }

// A textured background: value noise, a gradient, stripes or checks between two muted colours,
// plus a fine grain. Values stay within [75, 185] per channel.
cv::Mat make_background(Rng& rng, int S) {
  cv::Vec3i a = muted_colour(rng), b = muted_colour(rng);
  int kind = rng.integer(0, 3);
  std::vector<double> t(static_cast<std::size_t>(S) * S);
  if (kind == 0) {  // value noise: a coarse random grid, smoothly interpolated
    int g = rng.integer(3, 7);
    std::vector<double> grid(static_cast<std::size_t>(g + 1) * (g + 1));
    for (auto& v : grid) v = rng.uniform();
    for (int y = 0; y < S; ++y) {
      double gy = static_cast<double>(y) * g / S;
      int iy = static_cast<int>(gy);
      double fy = smoothstep(gy - iy);
      for (int x = 0; x < S; ++x) {
        double gx = static_cast<double>(x) * g / S;
        int ix = static_cast<int>(gx);
        double fx = smoothstep(gx - ix);
        auto at = [&](int yy, int xx) { return grid[static_cast<std::size_t>(yy) * (g + 1) + xx]; };
        double top = at(iy, ix) * (1 - fx) + at(iy, ix + 1) * fx;
        double bottom = at(iy + 1, ix) * (1 - fx) + at(iy + 1, ix + 1) * fx;
        t[static_cast<std::size_t>(y) * S + x] = top * (1 - fy) + bottom * fy;
      }
    }
  } else {
    double theta = rng.uniform(0, 2 * kPi), c = std::cos(theta), s = std::sin(theta);
    double period = rng.uniform(0.05, 0.2) * S;
    double phase = rng.uniform(0, 2 * kPi);
    for (int y = 0; y < S; ++y) {
      for (int x = 0; x < S; ++x) {
        double u = (x - S / 2.0) * c + (y - S / 2.0) * s, v = -(x - S / 2.0) * s + (y - S / 2.0) * c;
        double value;
        if (kind == 1) {
          value = std::min(1.0, std::max(0.0, u / (S * 1.2) + 0.5));  // gradient
        } else if (kind == 2) {
          value = 0.5 + 0.5 * std::sin(2 * kPi * u / period + phase);  // stripes
        } else {
          int cu = static_cast<int>(std::floor(u / period)), cv_ = static_cast<int>(std::floor(v / period));
          value = ((cu + cv_) & 1) ? 0.8 : 0.2;  // checks
        }
        t[static_cast<std::size_t>(y) * S + x] = value;
      }
    }
  }
  cv::Mat bg(S, S, CV_8UC3);
  for (int y = 0; y < S; ++y) {
    auto* row = bg.ptr<cv::Vec3b>(y);
    for (int x = 0; x < S; ++x) {
      double v = t[static_cast<std::size_t>(y) * S + x];
      int noise = rng.integer(-2, 2);  // grain, the same in the three channels
      for (int k = 0; k < 3; ++k) {
        int value = static_cast<int>(std::lround(a[k] + (b[k] - a[k]) * v)) + noise;
        row[x][k] = static_cast<std::uint8_t>(std::min(185, std::max(75, value)));
      }
    }
  }
  return bg;
}

std::vector<cv::Point> to_fixed(const std::vector<cv::Point2d>& pts) {
  std::vector<cv::Point> out;
  for (const auto& p : pts) out.emplace_back(static_cast<int>(std::lround(p.x * 16)), static_cast<int>(std::lround(p.y * 16)));
  return out;
}

// Draws shape `name` (anti-aliased, 255 inside) centred in a mask of side `side`.
void draw_shape(cv::Mat& mask, const std::string& name) {
  const double side = mask.cols, c = side / 2.0, r = side / 2.0 - 1.0;
  std::vector<cv::Point2d> p;
  if (name == "circle") {
    cv::circle(mask, cv::Point(static_cast<int>(c * 16), static_cast<int>(c * 16)), static_cast<int>(r * 16), 255,
               cv::FILLED, cv::LINE_AA, 4);
    return;
  } else if (name == "square") {
    double h = 0.88 * r;
    p = {{c - h, c - h}, {c + h, c - h}, {c + h, c + h}, {c - h, c + h}};
  } else if (name == "diamond") {
    p = {{c, c - r}, {c + 0.75 * r, c}, {c, c + r}, {c - 0.75 * r, c}};
  } else if (name == "triangle") {
    p = {{c, c - r}, {c + r, c + 0.8 * r}, {c - r, c + 0.8 * r}};
  } else if (name == "star") {
    for (int k = 0; k < 10; ++k) {
      double ang = -kPi / 2 + k * kPi / 5, rad = (k % 2 == 0) ? r : 0.42 * r;
      p.emplace_back(c + rad * std::cos(ang), c + 0.05 * r + rad * std::sin(ang));
    }
  } else if (name == "hexagon") {
    for (int k = 0; k < 6; ++k) p.emplace_back(c + r * std::cos(k * kPi / 3), c + r * std::sin(k * kPi / 3));
  } else if (name == "cross") {
    double t = 0.32 * r;
    p = {{c - t, c - r}, {c + t, c - r}, {c + t, c - t}, {c + r, c - t}, {c + r, c + t}, {c + t, c + t},
         {c + t, c + r}, {c - t, c + r}, {c - t, c + t}, {c - r, c + t}, {c - r, c - t}, {c - t, c - t}};
  } else if (name == "heart") {
    for (int k = 0; k < 72; ++k) {
      double u = 2 * kPi * k / 72, sx = std::sin(u);
      double hx = 16 * sx * sx * sx, hy = -(13 * std::cos(u) - 5 * std::cos(2 * u) - 2 * std::cos(3 * u) - std::cos(4 * u));
      p.emplace_back(c + hx * r / 16.5, c + (hy - 2.5) * r / 16.5);
    }
  }
  std::vector<std::vector<cv::Point>> polys{to_fixed(p)};
  cv::fillPoly(mask, polys, 255, cv::LINE_AA, 4);
}

// One object being placed: the square it is drawn in, and its alpha mask and colour layer.
struct Placed {
  SceneObject object;
  cv::Rect square;
};

// Composites an object (alpha `mask` [0,255], colour layer `colour` RGB) into `img` at `square`,
// and returns the tight box of the pixels with alpha >= 128 and their count.
cv::Rect composite(cv::Mat& img, const cv::Mat& mask, const cv::Mat& colour, const cv::Rect& square, int& area) {
  int x0 = square.width, y0 = square.height, x1 = -1, y1 = -1;
  area = 0;
  for (int y = 0; y < square.height; ++y) {
    const auto* m = mask.ptr<std::uint8_t>(y);
    const auto* c = colour.ptr<cv::Vec3b>(y);
    auto* o = img.ptr<cv::Vec3b>(square.y + y) + square.x;
    for (int x = 0; x < square.width; ++x) {
      int a = m[x];
      if (a == 0) continue;
      for (int k = 0; k < 3; ++k) o[x][k] = static_cast<std::uint8_t>((o[x][k] * (255 - a) + c[x][k] * a + 127) / 255);
      if (a >= 128) {
        ++area;
        x0 = std::min(x0, x);
        y0 = std::min(y0, y);
        x1 = std::max(x1, x);
        y1 = std::max(y1, y);
      }
    }
  }
  if (x1 < 0) return {};
  return {square.x + x0, square.y + y0, x1 - x0 + 1, y1 - y0 + 1};
}

// ---------------------------------------------------------------------------------------------
// Captions

std::string with_article(const std::string& phrase) {
  char c = phrase.empty() ? 'x' : phrase[0];
  bool vowel = c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
  return (vowel ? "an " : "a ") + phrase;
}

// "a small red circle" (or "a red circle" when the size is left out).
std::string mention(const SceneObject& o, bool with_size) {
  return with_article((with_size ? o.size + " " : std::string()) + o.colour + " " + o.category);
}

cv::Point2d centre(const cv::Rect& r) { return {r.x + r.width / 2.0, r.y + r.height / 2.0}; }

// Where `a` is relative to `b`, along the axis on which their box centres differ most.
std::string relation(const SceneObject& a, const SceneObject& b) {
  cv::Point2d ca = centre(a.box), cb = centre(b.box);
  double dx = cb.x - ca.x, dy = cb.y - ca.y;
  if (std::abs(dx) >= std::abs(dy)) return dx > 0 ? "to the left of" : "to the right of";
  return dy > 0 ? "above" : "below";
}

// Where `o` is in the image, by thirds of the box centre.
std::string position(const SceneObject& o, int S) {
  cv::Point2d c = centre(o.box);
  int col = c.x < S / 3.0 ? 0 : c.x < 2 * S / 3.0 ? 1 : 2;
  int row = c.y < S / 3.0 ? 0 : c.y < 2 * S / 3.0 ? 1 : 2;
  static const char* rows[] = {"top", "middle", "bottom"};
  static const char* cols[] = {"left", "center", "right"};
  if (row != 1 && col != 1) return std::string("in the ") + rows[row] + " " + cols[col];
  if (row != 1) return std::string("at the ") + rows[row];
  if (col != 1) return std::string("on the ") + cols[col];
  return "in the middle";
}

std::string join_list(const std::vector<std::string>& items) {
  std::string s;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) s += (i + 1 == items.size()) ? " and " : ", ";
    s += items[i];
  }
  return s;
}

// Five different captions: the first lists every object in full; with two or more objects the
// next two state relations between pairs; the rest are drawn from the other paraphrases.
std::vector<std::string> make_captions(Rng& rng, const std::vector<SceneObject>& objs, int S) {
  const int n = static_cast<int>(objs.size());
  auto sized = [&] { return !rng.chance(0.25); };  // a mention leaves its size out one time in four
  auto shuffled = [&] {
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    rng.shuffle(order);
    return order;
  };
  auto listing = [&](bool full) {
    std::vector<std::string> items;
    for (int i : shuffled()) items.push_back(mention(objs[i], full || sized()));
    return join_list(items);
  };
  std::vector<std::string> captions;
  auto add = [&](const std::string& c) {
    if (std::find(captions.begin(), captions.end(), c) == captions.end()) captions.push_back(c);
  };
  add(listing(true));

  std::vector<std::string> pool;
  if (n >= 2) {
    std::vector<std::pair<int, int>> pairs;
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        if (i != j) pairs.emplace_back(i, j);
      }
    }
    rng.shuffle(pairs);
    // Two relation captions about different pairs (or both directions of the only pair).
    add(mention(objs[pairs[0].first], sized()) + " " + relation(objs[pairs[0].first], objs[pairs[0].second]) + " " +
        mention(objs[pairs[0].second], sized()));
    for (std::size_t k = 1; k < pairs.size(); ++k) {
      bool same_pair = (pairs[k].first == pairs[0].first && pairs[k].second == pairs[0].second) ||
                       (pairs[k].first == pairs[0].second && pairs[k].second == pairs[0].first);
      if (n == 2 || !same_pair) {
        add(mention(objs[pairs[k].first], sized()) + " " + relation(objs[pairs[k].first], objs[pairs[k].second]) + " " +
            mention(objs[pairs[k].second], sized()));
        break;
      }
    }
    for (std::size_t k = 2; k < pairs.size(); ++k) {
      pool.push_back(mention(objs[pairs[k].first], sized()) + " " + relation(objs[pairs[k].first], objs[pairs[k].second]) +
                     " " + mention(objs[pairs[k].second], sized()));
    }
    pool.push_back("there is " + listing(false));
    pool.push_back("the image shows " + listing(false));
    pool.push_back("a picture of " + listing(false));
    std::vector<std::string> placed;
    for (int i : shuffled()) placed.push_back(mention(objs[i], sized()) + " " + position(objs[i], S));
    pool.push_back(join_list(placed));
  } else {
    const SceneObject& o = objs[0];
    pool = {"there is " + mention(o, sized()),
            mention(o, sized()) + " " + position(o, S),
            "a picture of " + mention(o, sized()),
            "the image shows " + mention(o, sized()),
            with_article(o.colour + " " + o.category) + " that is " + o.size,
            "a single " + o.size + " " + o.colour + " " + o.category,
            "a single " + o.colour + " " + o.category + " " + position(o, S)};
  }
  rng.shuffle(pool);
  for (const auto& c : pool) {
    if (captions.size() >= 5) break;
    add(c);
  }
  // Paraphrases that came out the same (a list of one, sizes left out) are topped up.
  for (int extra = 0; captions.size() < 5; ++extra) add(listing(true) + (extra % 2 ? " on a background" : " in the image"));
  return captions;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// One scene

Scene make_scene(const SceneOptions& options, int index, const FashionMnist* fashion) {
  const int S = options.size;
  const bool fashion_mode = options.objects == "fashion";
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
    cv::Mat mask = cv::Mat::zeros(side, side, CV_8UC1);
    cv::Mat colour(side, side, CV_8UC3);
    cv::Vec3b base = scene_colour_rgb(p.object.colour);
    cv::Vec3i tint(base[0] + rng.integer(-12, 12), base[1] + rng.integer(-12, 12), base[2] + rng.integer(-12, 12));
    if (!fashion_mode) {
      draw_shape(mask, p.object.category);
      for (int y = 0; y < side; ++y) {
        auto* row = colour.ptr<cv::Vec3b>(y);
        for (int x = 0; x < side; ++x) {
          int noise = rng.integer(-2, 2);
          for (int k = 0; k < 3; ++k) row[x][k] = clamp8(tint[k] + noise);
        }
      }
    } else {
      const std::string split = scene_split(index);
      const FashionMnist::Set& set = split == "train" ? fashion->train : fashion->test;
      const auto& items = set.by_label[p.object.category_id - 1];
      int item = items[rng.integer(0, static_cast<int>(items.size()) - 1)];
      cv::Mat small(28, 28, CV_8UC1, const_cast<std::uint8_t*>(set.pixels.data()) + static_cast<std::size_t>(item) * 784);
      cv::Mat big;
      cv::resize(small, big, cv::Size(side, side), 0, 0, cv::INTER_CUBIC);
      for (int y = 0; y < side; ++y) {
        const auto* g = big.ptr<std::uint8_t>(y);
        auto* m = mask.ptr<std::uint8_t>(y);
        auto* row = colour.ptr<cv::Vec3b>(y);
        for (int x = 0; x < side; ++x) {
          m[x] = clamp8(3 * g[x]);
          double shade = 0.7 + 0.3 * g[x] / 255.0;  // the photograph's texture, in the named colour
          for (int k = 0; k < 3; ++k) row[x][k] = clamp8(static_cast<int>(std::lround(tint[k] * shade)));
        }
      }
    }
    p.object.box = composite(scene.rgb, mask, colour, p.square, p.object.area);
    if (p.object.box.area() > 0) scene.objects.push_back(p.object);
  }
  if (scene.objects.empty()) throw std::logic_error("make_scene: no object could be placed");
  scene.captions = make_captions(rng, scene.objects, S);
  return scene;
}

// ---------------------------------------------------------------------------------------------
// Writing the data set

namespace {

void write_atomically(const fs::path& path, const void* data, std::size_t n, bool sync) {
  fs::path tmp = path;
  tmp += ".tmp-" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw OutputError(path.string() + ": " + std::strerror(errno));
  const auto* p = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < n) {
    ssize_t w = ::write(fd, p + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw OutputError(path.string() + ": " + std::strerror(e));
    }
    done += static_cast<std::size_t>(w);
  }
  if ((sync && ::fsync(fd) != 0) || ::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    throw OutputError(path.string() + ": " + std::strerror(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    throw OutputError(path.string() + ": " + std::strerror(e));
  }
}

void write_json(const fs::path& path, const json& j) {
  std::string text = j.dump(1) + "\n";
  write_atomically(path, text.data(), text.size(), true);
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
  if (options.objects == "fashion") fashion = load_fashion_mnist(options.fashion_dir);
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
        write_atomically(dir / "images" / image_file_name(i), png.data(), png.size(), false);
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
  json info = {{"description", "satcap synthetic scenes (" + options.objects + ")"},
               {"format_version", kFormatVersion},
               {"generator", "satcap scenes"},
               {"seed", options.seed},
               {"objects", options.objects},
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
    cats.push_back({{"id", static_cast<int>(c) + 1}, {"name", categories[c]}, {"supercategory", options.objects == "shapes" ? "shape" : "clothing"}});
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
