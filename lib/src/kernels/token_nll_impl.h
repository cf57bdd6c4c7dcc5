// The loops behind token_nll_kernels.h, included once per instruction set by
// token_nll_{generic,avx2,avx512}.cpp (their compiler flags choose the vector width). Define
// SATCAP_KERNEL_NS first.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "token_nll_kernels.h"

namespace satcap::kernels::SATCAP_KERNEL_NS {
namespace {

#pragma omp declare simd
inline float exp_approx(float x) {
  // Cephes' expf: x = n ln 2 + r with |r| <= ln 2 / 2, e^r by its degree-5 minimax polynomial,
  // 2^n put into the exponent bits. n is rounded with the 1.5 * 2^23 trick, which vectorises
  // without SSE4.1's round instruction.
  x = std::min(std::max(x, -87.33654475f), 88.0f);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

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
