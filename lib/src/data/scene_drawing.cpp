// The pixels of the synthetic scenes (see scene_drawing.h). Shapes are filled polygons (and a
// circle) drawn with OpenCV's anti-aliasing at 1/16-pixel precision; every random draw goes
// through the scene's Rng, so a scene's pixels depend only on its seed.
#include "data/scene_drawing.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace satcap {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::uint8_t clamp8(int v) { return static_cast<std::uint8_t>(std::min(255, std::max(0, v))); }

// A muted, low-saturation colour: what backgrounds are made of, far from every named colour.
cv::Vec3i muted_colour(Rng& rng) {
  int base = rng.integer(100, 155);
  return {base + rng.integer(-15, 15), base + rng.integer(-15, 15), base + rng.integer(-15, 15)};
}

double smoothstep(double t) { return t * t * (3 - 2 * t); }

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

}  // namespace

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

ObjectLayers paint_shape(Rng& rng, const std::string& shape, int side, const cv::Vec3i& tint) {
  ObjectLayers layers{cv::Mat::zeros(side, side, CV_8UC1), cv::Mat(side, side, CV_8UC3)};
  draw_shape(layers.mask, shape);
  for (int y = 0; y < side; ++y) {
    auto* row = layers.colour.ptr<cv::Vec3b>(y);
    for (int x = 0; x < side; ++x) {
      int noise = rng.integer(-2, 2);
      for (int k = 0; k < 3; ++k) row[x][k] = clamp8(tint[k] + noise);
    }
  }
  return layers;
}

ObjectLayers paint_photo(const cv::Mat& photo, int side, const cv::Vec3i& tint) {
  ObjectLayers layers{cv::Mat::zeros(side, side, CV_8UC1), cv::Mat(side, side, CV_8UC3)};
  cv::Mat big;
  cv::resize(photo, big, cv::Size(side, side), 0, 0, cv::INTER_CUBIC);
  for (int y = 0; y < side; ++y) {
    const auto* g = big.ptr<std::uint8_t>(y);
    auto* m = layers.mask.ptr<std::uint8_t>(y);
    auto* row = layers.colour.ptr<cv::Vec3b>(y);
    for (int x = 0; x < side; ++x) {
      m[x] = clamp8(3 * g[x]);
      double shade = 0.7 + 0.3 * g[x] / 255.0;  // the photograph's texture, in the named colour
      for (int k = 0; k < 3; ++k) row[x][k] = clamp8(static_cast<int>(std::lround(tint[k] * shade)));
    }
  }
  return layers;
}

cv::Rect composite(cv::Mat& img, const ObjectLayers& object, const cv::Rect& square, int& area) {
  int x0 = square.width, y0 = square.height, x1 = -1, y1 = -1;
  area = 0;
  for (int y = 0; y < square.height; ++y) {
    const auto* m = object.mask.ptr<std::uint8_t>(y);
    const auto* c = object.colour.ptr<cv::Vec3b>(y);
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

}  // namespace satcap
