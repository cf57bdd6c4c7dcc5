// The loops behind small_gemm_kernels.h, included once per instruction set by
// small_gemm_{generic,avx2,avx512}.cpp. Define SATCAP_KERNEL_NS, SATCAP_VEC (floats per vector
// register: 16, 8 or 4) and SATCAP_NB (rows of w per register block) first. GCC's vector
// extensions give the vector type; the instruction set's flags decide how it is lowered.
#include <cstdint>
#include <cstring>

#include "small_gemm_kernels.h"

namespace satcap::kernels::SATCAP_KERNEL_NS {
namespace {

constexpr int kVec = SATCAP_VEC;
typedef float vec __attribute__((vector_size(kVec * sizeof(float))));

inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);  // unaligned
  return v;
}

inline float sum_of(vec v) {
  float s = 0;
  for (int i = 0; i < kVec; ++i) s += v[i];
  return s;
}

// y[m .. m + MB, n .. n + NB] over the whole of K.
template <int MB, int NB>
inline void block(const float* x, const float* w, float* y, int64_t K, int64_t N, int64_t m, int64_t n) {
  vec acc[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = vec{};
  const int64_t K_vec = K - K % kVec;
  for (int64_t k = 0; k < K_vec; k += kVec) {
    vec wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = load(w + (n + j) * K + k);
    for (int i = 0; i < MB; ++i) {
      const vec xv = load(x + (m + i) * K + k);
      for (int j = 0; j < NB; ++j) acc[i][j] += xv * wv[j];
    }
  }
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) {
      float s = sum_of(acc[i][j]);
      for (int64_t k = K_vec; k < K; ++k) s += x[(m + i) * K + k] * w[(n + j) * K + k];
      y[(m + i) * N + n + j] = s;
    }
}

template <int NB>
inline void columns(const float* x, const float* w, float* y, int64_t M, int64_t K, int64_t N, int64_t n) {
  constexpr int MB = 4;
  int64_t m = 0;
  for (; m + MB <= M; m += MB) block<MB, NB>(x, w, y, K, N, m, n);
  for (; m < M; ++m) block<1, NB>(x, w, y, K, N, m, n);
}

void nt(const float* x, const float* w, float* y, int64_t M, int64_t K, int64_t N, int64_t n_begin, int64_t n_end) {
  constexpr int NB = SATCAP_NB;
  int64_t n = n_begin;
  for (; n + NB <= n_end; n += NB) columns<NB>(x, w, y, M, K, N, n);  // each block of w rows read once
  for (; n < n_end; ++n) columns<1>(x, w, y, M, K, N, n);
}

}  // namespace

SmallGemmKernels gemm_kernels(const char* isa) { return {nt, isa}; }

}  // namespace satcap::kernels::SATCAP_KERNEL_NS
