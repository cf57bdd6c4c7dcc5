// PyTorch's LSTMCell after its products, as one autograd operation: the gate pre-activations as a
// sum of parts (the decoder computes W_ih's and W_hh's products separately), then
//   i, f, o = sigmoid, g = tanh of the gates (in LSTMCell's order i, f, g, o),
//   c' = f c + i g,   h' = o tanh(c').
// ATen spends about ten passes over [R, 4H] and [R, H] on this forward and twice that backward,
// each a kernel launch and a new tensor; the fused kernels (lib/src/kernels/lstm_cell_kernels.h)
// make one pass each way.
#pragma once

#include <utility>
#include <vector>

namespace at {
class Tensor;
}

namespace satcap {

// gate_parts: one to three [R, 4H] float tensors whose sum is the gates (rows at any stride, so a
// column slice of a wider product is read in place); c [R, H] -> (h' [R, H], c' [R, H]). CPU float32 inputs take the fused kernels; anything else
// takes lstm_cell_reference. Throws UsageError for shapes that do not fit.
std::pair<at::Tensor, at::Tensor> lstm_cell(const std::vector<at::Tensor>& gate_parts, const at::Tensor& c);

// The same as ATen operations (what the kernels are tested against, and the path off the CPU).
std::pair<at::Tensor, at::Tensor> lstm_cell_reference(const std::vector<at::Tensor>& gate_parts, const at::Tensor& c);

}  // namespace satcap
