// The loops behind attention_scores_kernels.h, included once per instruction set by
// attention_scores_{generic,avx2,avx512}.cpp (their compiler flags choose the vector width;
// `#pragma omp simd` with -fopenmp-simd lets the reductions vectorise). Define SATCAP_KERNEL_NS first.
#include <algorithm>

#include "attention_scores_kernels.h"
#include "fast_math.h"

namespace satcap::kernels::SATCAP_KERNEL_NS {
namespace {

template <bool Relu>
void forward_items(const ScoreArgs& s, int64_t begin, int64_t end, float* scores) {
  const int64_t n = s.regions, A = s.width;
  const float* w = s.w;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t r = item / n, i = item % n;
    const float* p = s.projected + ((r / s.beam) * n + i) * A;  // P[b, i, :]
    const float* u = s.hidden + r * A;                          // U[r, :]
    float acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t a = 0; a < A; ++a) {
      const float x = p[a] + u[a];
      acc += w[a] * (Relu ? std::max(x, 0.0f) : tanh_approx(x));
    }
    scores[item] = acc + s.bias;
  }
}

template <bool Relu>
void backward_items(const ScoreArgs& s, const float* de, int64_t begin, int64_t end, float* dP, float* dU, float* dw) {
  const int64_t n = s.regions, A = s.width, K = s.beam;
  const float* w = s.w;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / n, i = item % n;
    const float* p = s.projected + item * A;  // P[b, i, :]
    float* dp = dP + item * A;
    for (int64_t r = b * K; r < std::min((b + 1) * K, s.rows); ++r) {
      const float g = de[r * n + i];
      if (g == 0) continue;  // no gradient reaches this score: nothing to add
      const float* u = s.hidden + r * A;
      float* du = dU + r * A;
#pragma omp simd
      for (int64_t a = 0; a < A; ++a) {
        const float x = p[a] + u[a];
        float t, slope;
        if (Relu) {
          t = std::max(x, 0.0f);
          slope = x > 0 ? 1.0f : 0.0f;
        } else {
          t = tanh_approx(x);
          slope = 1.0f - t * t;
        }
        const float d = g * w[a] * slope;  // de/dx * g
        dp[a] += d;
        du[a] += d;
        dw[a] += g * t;
      }
    }
  }
}

void forward(const ScoreArgs& s, int64_t begin, int64_t end, float* scores) {
  s.relu ? forward_items<true>(s, begin, end, scores) : forward_items<false>(s, begin, end, scores);
}

void backward(const ScoreArgs& s, const float* de, int64_t begin, int64_t end, float* dP, float* dU, float* dw) {
  s.relu ? backward_items<true>(s, de, begin, end, dP, dU, dw) : backward_items<false>(s, de, begin, end, dP, dU, dw);
}

void context_forward(const ContextArgs& s, const float* alpha, int64_t begin, int64_t end, float* context) {
  const int64_t n = s.regions, D = s.dim;
  for (int64_t r = begin; r < end; ++r) {
    const float* f = s.features + (r / s.beam) * n * D;  // a_1..a_n of the row's image
    const float* al = alpha + r * n;
    float* z = context + r * D;
    std::fill(z, z + D, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      const float a = al[i];
      const float* fi = f + i * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) z[d] += a * fi[d];
    }
  }
}

void context_backward(const ContextArgs& s, const float* dz, int64_t begin, int64_t end, float* dalpha) {
  const int64_t n = s.regions, D = s.dim;
  for (int64_t r = begin; r < end; ++r) {
    const float* f = s.features + (r / s.beam) * n * D;
    const float* g = dz + r * D;
    for (int64_t i = 0; i < n; ++i) {
      const float* fi = f + i * D;
      float acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t d = 0; d < D; ++d) acc += g[d] * fi[d];
      dalpha[r * n + i] = acc;
    }
  }
}

}  // namespace

float tanh_of(float x) { return tanh_approx(x); }

ScoreKernels kernels(const char* isa) { return {forward, backward, context_forward, context_backward, isa}; }

}  // namespace satcap::kernels::SATCAP_KERNEL_NS
