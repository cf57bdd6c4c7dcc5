// The attention MLP's scores e_ti = w^T act(W_a a_i + b + U_a h_{t-1}) + c (eq. 4), as one fused
// operation with its own backward on the CPU (other devices, and other dtypes, run the plain tensor
// expression). The plain expression writes act(.) for every (row, region, unit), [R, n, A] floats
// per step (25.7 MB at batch 64 and the paper's n 196, A 512), then reads and writes that again in
// the backward, and autograd adds up a full-size gradient of the projected features per step. The
// fused kernel reads the projected features once forward and once backward, recomputing act(.).
// Also the soft context sum_i alpha_ti a_i (eq. 13), fused the same way. Kernels: lib/src/kernels/.
#pragma once

#include <ATen/core/Tensor.h>

namespace satcap {

// One step's scores: projected [images, n, A] (W_a a_i + b), hidden [R, A] (U_a h_{t-1}; row r
// belongs to image r / beam, R <= images * beam), weight [1, A] and bias [1] (w and c; bias may be
// undefined) -> scores [R, n]. relu: act = relu instead of tanh.
at::Tensor attention_scores(const at::Tensor& projected, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& bias, int64_t beam, bool relu);

// The scores of a teacher-forced sequence of steps over the same projected features (beam 1):
// step t's rows are the first R_t images (R_t never grows). The gradient of `projected` is summed
// in one [images, n, A] buffer across the steps and handed to autograd once, by the first step
// (whose backward runs last: every step's node depends on the next one's, through the projected
// features it passes on). One backward pass per forward pass.
class ScoreSequence {
 public:
  ScoreSequence(at::Tensor projected, at::Tensor weight, at::Tensor bias, bool relu);
  at::Tensor next(const at::Tensor& hidden);  // [R_t, A] -> [R_t, n]

 private:
  at::Tensor projected_, weight_, bias_, sum_;
  at::Tensor generic_sums_, generic_weight_sum_;  // the device-generic path's running gradients
  bool relu_ = false, first_ = true;
};

// The soft context z_t = sum_i alpha_ti a_i (eq. 13): features [images, n, D], alpha [R, n] (row r
// belongs to image r / beam) -> [R, D]. On the CPU a kernel parallel over rows (ATen's bmm runs
// one single-row product per image, each with its own thread synchronisation); the features get no
// gradient there, so features that require one (fine-tuning) take at::bmm.
at::Tensor attention_context(const at::Tensor& features, const at::Tensor& alpha, int64_t beam);
at::Tensor attention_context_reference(const at::Tensor& features, const at::Tensor& alpha, int64_t beam);

// The same scores as the plain tensor expression (what other devices run; the tests' reference).
at::Tensor attention_scores_reference(const at::Tensor& projected, const at::Tensor& hidden, const at::Tensor& weight,
                                      const at::Tensor& bias, int64_t beam, bool relu);

// Which kernels the fused scores run on this CPU: "avx512", "avx2" or "generic".
const char* attention_scores_isa();

}  // namespace satcap
