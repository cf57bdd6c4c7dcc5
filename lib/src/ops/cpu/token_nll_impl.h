// The loops behind token_nll_kernels.h, included once per instruction set by
// token_nll_{generic,avx2,avx512}.cpp (their compiler flags choose the vector width). Define
// SATCAP_KERNEL_NS first.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "fast_math.h"
#include "token_nll_kernels.h"

namespace satcap::kernels::SATCAP_KERNEL_NS {
namespace {

void forward(const TokenNllArgs& s, int64_t begin, int64_t end, float* lse, float* nll) {
  const int64_t V = s.width;
  for (int64_t r = begin; r < end; ++r) {
    const float* l = s.logits + r * V;
    float top = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : top)
    for (int64_t j = 0; j < V; ++j) top = std::max(top, l[j]);
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < V; ++j) sum += exp_approx(l[j] - top);
    lse[r] = top + std::log(sum);
    nll[r] = lse[r] - l[s.targets[r]];
  }
}

void backward(const TokenNllArgs& s, const float* lse, const float* g, int64_t begin, int64_t end, float* dl) {
  const int64_t V = s.width;
  for (int64_t r = begin; r < end; ++r) {
    const float* l = s.logits + r * V;
    float* d = dl + r * V;
    const float m = lse[r], gr = g[r];
#pragma omp simd
    for (int64_t j = 0; j < V; ++j) d[j] = gr * exp_approx(l[j] - m);
    d[s.targets[r]] -= gr;
  }
}

}  // namespace

float exp_of(float x) { return exp_approx(x); }

TokenNllKernels nll_kernels(const char* isa) { return {forward, backward, isa}; }

}  // namespace satcap::kernels::SATCAP_KERNEL_NS
