// The caption grammar of the synthetic scenes (see scene_captions.h): articles, mentions ("a small
// red circle"), relations between two objects ("to the left of", "above"), positions in the image
// by thirds ("in the top left"), lists, and the five captions drawn from them.
#include "data/scene_captions.h"

#include <opencv2/core/types.hpp>

#include <algorithm>
#include <cmath>
#include <utility>

namespace satcap {
namespace {

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

}  // namespace

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

}  // namespace satcap
