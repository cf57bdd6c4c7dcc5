// The additive attention scores of Show, Attend and Tell (eq. 4, the original code's f_att), fused
// into one pass over the projected features, forward and backward, on raw float arrays (no torch):
//
//   e[r, i] = bias + sum_a w[a] * act(P[b, i, a] + U[r, a]),   b = r / beam,   act = tanh or relu
//
// P [images, n, A] is W_a a_i + b once per image, U [rows, A] is U_a h_{t-1} per row (a beam
// search has `beam` rows per image). Nothing of size [rows, n, A] is ever written: the forward
// reads P once, and the backward recomputes act(.) from P instead of storing it (measured, in
// lib/src/attention_scores.cpp's notes). Built once per instruction set (attention_scores_*.cpp,
// each with its own compiler flags) and chosen at run time by the CPU's features.
#pragma once

#include <cstdint>

namespace satcap::kernels {

struct ScoreArgs {
  const float* projected = nullptr;  // [images, n, A]
  const float* hidden = nullptr;     // [rows, A]
  const float* w = nullptr;          // [A]
  float bias = 0;
  int64_t rows = 0, regions = 0, width = 0, beam = 1;
  bool relu = false;  // act = relu instead of tanh
};

// Scores of the (row, region) items [item_begin, item_end), item = r * n + i: scores[item] = e[r, i].
using ScoreForward = void (*)(const ScoreArgs& args, int64_t item_begin, int64_t item_end, float* scores);

// The backward of the (image, region) items [item_begin, item_end), item = b * n + i, for the rows
// of image b (r = b * beam + k < rows), given grad_scores [rows, n]:
//   grad_projected[b, i, :] += sum_k de[r, i] * w * act'(.)      (each item owns its row of P)
//   grad_hidden[r, :]       += the same terms, summed over i       (a partial per caller thread)
//   grad_w[:]               += sum de[r, i] * act(.)               (a partial per caller thread)
using ScoreBackward = void (*)(const ScoreArgs& args, const float* grad_scores, int64_t item_begin, int64_t item_end,
                               float* grad_projected, float* grad_hidden, float* grad_w);

// The soft context z_t = sum_i alpha_ti a_i (eq. 13) per row, row r reading image r / beam:
//   forward:  context[r, :] = sum_i alpha[r, i] * features[b, i, :]        rows [row_begin, row_end)
//   backward: grad_alpha[r, i] = grad_context[r, :] . features[b, i, :]    (the features are fixed)
struct ContextArgs {
  const float* features = nullptr;  // [images, n, D]
  int64_t regions = 0, dim = 0, beam = 1;
};
using ContextForward = void (*)(const ContextArgs& args, const float* alpha, int64_t row_begin, int64_t row_end,
                                float* context);
using ContextBackward = void (*)(const ContextArgs& args, const float* grad_context, int64_t row_begin,
                                 int64_t row_end, float* grad_alpha);

struct ScoreKernels {
  ScoreForward forward = nullptr;
  ScoreBackward backward = nullptr;
  ContextForward context_forward = nullptr;
  ContextBackward context_backward = nullptr;
  const char* isa = "";  // "avx512", "avx2" or "generic"
};

ScoreKernels score_kernels_generic();
ScoreKernels score_kernels_avx2();
ScoreKernels score_kernels_avx512();

// The best of the above for this CPU (chosen once).
const ScoreKernels& score_kernels();

// tanh(x) as the kernels compute it (for tests): Eigen's 13/6 rational approximation, clamped at
// +-7.905 (Eigen's bound, past which tanh is within 2.7e-7 of +-1; std::tanh reaches +-1 in float
// only past 9.01); within a few units in the last place of std::tanh.
float kernel_tanh(float x);

}  // namespace satcap::kernels
