// A linear map applied at every step of a recurrence, y_t = x_t W^T, whose weight gradient is one
// matrix product over all the steps' rows in the backward (dW = [dy_0; dy_1; ...]^T [x_0; x_1; ...])
// instead of one [out, in] product per step with an inner dimension of only R_t rows, a zero fill
// and an addition into the gradient per step. (For the LSTM's recurrent weights at the paper's
// sizes that is 21 MB written three times per step.) Steps of at most 64 rows on the CPU take a
// packed-panel kernel (lib/src/kernels/small_gemm_kernels.h) forward and backward, with the weight
// packed once per sequence for each direction. Device-generic.
#pragma once

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>

namespace satcap {

class StepLinearSequence {
 public:
  // weight [out, in]; total_rows: at least the sum of the row counts of all the steps to come.
  StepLinearSequence(at::Tensor weight, int64_t total_rows);
  // x [R_t, in] -> [R_t, out]. Throws UsageError past total_rows.
  at::Tensor next(const at::Tensor& x);
  // bias + x W^T: bias [R_t, out] (or [out]) is added in the same product (addmm) off the CPU
  // kernels; its gradient is the output's.
  at::Tensor next(const at::Tensor& x, const at::Tensor& bias);

 private:
  at::Tensor weight_;  // the weight as the next step takes it (each step passes it on)
  at::Tensor inputs_;  // [total_rows, in]   the steps' x, written in forward
  at::Tensor grads_;   // [total_rows, out]  the steps' dy, written in backward
  at::Tensor used_;    // [1] int64 (CPU)    rows written so far: what the weight gradient sums over
  at::Tensor packed_forward_;   // W^T in panels for the forward, made by the first step that needs it
  at::Tensor packed_backward_;  // W in panels for the backward's dx, made by the first backward that needs it
  int64_t total_rows_ = 0;
  // Off the CPU kernels: the steps' inputs and gradients as lists instead of row buffers.
  bool listed_ = false;
  c10::List<at::Tensor> listed_inputs_, listed_grads_;
  int64_t offset_ = 0;
  bool first_ = true;
};

}  // namespace satcap
