// The pixels of the synthetic scenes (scenes.cpp): textured backgrounds, the objects' alpha masks
// and colour layers (drawn shapes or Fashion-MNIST photographs, in a named colour), and their
// compositing. All pictures are RGB. Private to the data layer.
#pragma once

#include <opencv2/core/mat.hpp>

#include <string>

#include "data/scene_random.h"

namespace satcap {

// A textured background of side `size`, CV_8UC3: value noise, a gradient, stripes or checks
// between two muted colours, plus a fine grain. Values stay within [75, 185] per channel.
cv::Mat make_background(Rng& rng, int size);

// One object drawn in a square of side `side`, before it is placed.
struct ObjectLayers {
  cv::Mat mask;    // [side, side] CV_8UC1, alpha in [0, 255]
  cv::Mat colour;  // [side, side] CV_8UC3, RGB
};

// Shape `shape` (one of scene_categories(SceneObjects::shapes)), anti-aliased and centred, in colour `tint`
// with a fine grain.
ObjectLayers paint_shape(Rng& rng, const std::string& shape, int side, const cv::Vec3i& tint);

// A Fashion-MNIST photograph (`photo`: 28x28 CV_8UC1) scaled to the square: its greys make the
// alpha and shade the colour `tint` with the photograph's texture.
ObjectLayers paint_photo(const cv::Mat& photo, int side, const cv::Vec3i& tint);

// Composites an object into `img` at `square` (whose size is the layers'), and returns the tight
// box of the pixels with alpha >= 128 (empty if none) and their count in `area`.
cv::Rect composite(cv::Mat& img, const ObjectLayers& object, const cv::Rect& square, int& area);

}  // namespace satcap
