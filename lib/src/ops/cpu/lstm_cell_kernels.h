// PyTorch's LSTMCell after its products, fused into one pass over each row forward and one
// backward, on raw float arrays (no torch). The gate pre-activations arrive as a sum of up to
// three parts (the products the decoder computes separately), in LSTMCell's order i, f, g, o:
//
//   forward:  a = p0 + p1 + p2                            [rows, 4H]
//             i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g)   (kept, [rows, 4H], for backward)
//             c' = f c + i g,   t = tanh(c'),   h' = o t         (t kept, [rows, H])
//   backward: dc~ = dc' + dh' o (1 - t^2)
//             da_i = dc~ g i (1 - i),  da_f = dc~ c f (1 - f),  da_g = dc~ i (1 - g^2),
//             da_o = dh' t o (1 - o),  dc = dc~ f
//
// da is the gradient of every part. sigmoid and tanh are fast_math.h's: tanh within a few units in
// the last place of std::tanh, sigmoid within 1.7e-7 absolute. Built once per instruction set
// (lstm_cell_*.cpp, their flags in CMakeLists.txt) and chosen at run time (dispatch.cpp).
#pragma once

#include <cstdint>

namespace satcap::kernels {

struct LstmCellForwardArgs {
  const float* parts[3] = {nullptr, nullptr, nullptr};  // [rows, 4H] each with row stride part_ld; unused: null
  int64_t part_ld[3] = {0, 0, 0};
  const float* c = nullptr;  // [rows, H] (row stride H)
  int64_t hidden = 0;        // H
  float* h_out = nullptr;    // [rows, H]
  float* c_out = nullptr;    // [rows, H]
  float* gates = nullptr;    // [rows, 4H]  i, f, g, o after their activations
  float* tanh_c = nullptr;   // [rows, H]   tanh(c')
};

struct LstmCellBackwardArgs {
  const float* grad_h = nullptr;  // [rows, H], or null: no gradient reaches h'
  const float* grad_c = nullptr;  // [rows, H], or null: none reaches c'
  const float* c = nullptr;       // [rows, H]  the forward's c
  const float* gates = nullptr;   // [rows, 4H] the forward's
  const float* tanh_c = nullptr;  // [rows, H]  the forward's
  int64_t hidden = 0;
  float* grad_gates = nullptr;  // [rows, 4H]
  float* grad_c_in = nullptr;   // [rows, H]
};

// Rows [row_begin, row_end).
using LstmCellForward = void (*)(const LstmCellForwardArgs& args, int64_t row_begin, int64_t row_end);
using LstmCellBackward = void (*)(const LstmCellBackwardArgs& args, int64_t row_begin, int64_t row_end);

struct LstmCellKernels {
  LstmCellForward forward = nullptr;
  LstmCellBackward backward = nullptr;
  const char* isa = "";
};

LstmCellKernels lstm_cell_kernels_generic();
LstmCellKernels lstm_cell_kernels_avx2();
LstmCellKernels lstm_cell_kernels_avx512();

// The best of the above for this CPU (chosen once, as score_kernels()).
const LstmCellKernels& lstm_cell_kernels();

}  // namespace satcap::kernels
