// Small tensor helpers the decoder's two paths share (decoder.cpp, decoder_training.cpp).
#pragma once

#include <ATen/ATen.h>

#include <sstream>
#include <string>
#include <vector>

namespace satcap::detail {

// Packed rows x [N, ...] at positions index (b * S + t) scattered into [B, S, ...], `fill` elsewhere.
inline at::Tensor padded(const at::Tensor& x, const at::Tensor& index, int64_t B, int64_t S, double fill) {
  std::vector<int64_t> shape{B * S};
  for (int64_t d = 1; d < x.dim(); ++d) shape.push_back(x.size(d));
  auto full = at::full(shape, fill, x.options()).index_copy(0, index, x);
  shape[0] = S;
  shape.insert(shape.begin(), B);
  return full.view(shape);
}

inline std::string shape_of(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

}  // namespace satcap::detail
