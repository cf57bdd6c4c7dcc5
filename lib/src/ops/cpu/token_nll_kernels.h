// The token NLL of a softmax over the vocabulary, -log softmax(l_r)[t_r], fused into passes over
// each row of logits, forward and backward, on raw float arrays (no torch):
//
//   forward:  lse[r] = log sum_j exp(l[r, j]),   nll[r] = lse[r] - l[r, t_r]
//   backward: grad_logits[r, j] = g[r] * (exp(l[r, j] - lse[r]) - [j == t_r])
//
// Nothing of size [rows, V] is written but the gradient: no log-probabilities in the forward, no
// zero-filled [rows, V] for the gather's backward. Built once per instruction set
// (token_nll_*.cpp, their flags in CMakeLists.txt) and chosen at run time (dispatch.cpp).
#pragma once

#include <cstdint>

namespace satcap::kernels {

struct TokenNllArgs {
  const float* logits = nullptr;    // [rows, width]
  const int64_t* targets = nullptr;  // [rows], each in [0, width)
  int64_t rows = 0, width = 0;
};

// Rows [row_begin, row_end): lse[r] and nll[r].
using TokenNllForward = void (*)(const TokenNllArgs& args, int64_t row_begin, int64_t row_end, float* lse, float* nll);
// Rows [row_begin, row_end) of grad_logits, given lse [rows] and grad_nll [rows].
using TokenNllBackward = void (*)(const TokenNllArgs& args, const float* lse, const float* grad_nll, int64_t row_begin,
                                  int64_t row_end, float* grad_logits);

struct TokenNllKernels {
  TokenNllForward forward = nullptr;
  TokenNllBackward backward = nullptr;
  const char* isa = "";
};

TokenNllKernels token_nll_kernels_generic();
TokenNllKernels token_nll_kernels_avx2();
TokenNllKernels token_nll_kernels_avx512();

// The best of the above for this CPU (chosen once, as score_kernels()).
const TokenNllKernels& token_nll_kernels();

// exp(x) as the kernels compute it (for tests): Cephes' expf, within 2 units in the last place of
// std::exp for x in [-87.3, 88]; 0 below (the smallest normal float there).
float kernel_exp(float x);

}  // namespace satcap::kernels
