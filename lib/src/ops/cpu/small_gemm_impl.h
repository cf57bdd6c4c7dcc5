// The loops behind small_gemm_kernels.h, included once per instruction set by
// small_gemm_{generic,avx2,avx512}.cpp. Define SATCAP_KERNEL_NS, SATCAP_VEC (floats per vector
// register: 16, 8 or 4) and SATCAP_MR (rows per register block; with kPanel / SATCAP_VEC vectors
// per row, the accumulators and one row of B must fit the instruction set's registers) first.
// GCC's vector extensions give the vector type; the instruction set's flags decide how it is lowered.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "small_gemm_kernels.h"

namespace satcap::kernels::SATCAP_KERNEL_NS {
namespace {

constexpr int kVec = SATCAP_VEC;
constexpr int kMR = SATCAP_MR;
constexpr int kNV = static_cast<int>(kPanel) / kVec;  // vectors per panel row
static_assert(kPanel % kVec == 0, "a panel is whole vectors");
typedef float vec __attribute__((vector_size(kVec * sizeof(float))));

inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);  // unaligned
  return v;
}

inline void store(float* p, const vec& v) { std::memcpy(p, &v, sizeof v); }

// Groups of Width rows of src [R, K] (rows ld floats apart) as [K][Width] each, zero past R:
// groups [g_begin, g_end). The panels of B = w^T (Width = kPanel) and the tiles of x (Width =
// kMR) are both this.
template <int64_t Width>
void interleave_rows(const float* src, int64_t ld, float* packed, int64_t R, int64_t K, int64_t g_begin,
                     int64_t g_end) {
  constexpr int64_t kSpan = 64;  // columns of src per pass: the group's [kSpan][Width] stays in L1
  for (int64_t g = g_begin; g < g_end; ++g) {
    float* out = packed + g * K * Width;
    for (int64_t k0 = 0; k0 < K; k0 += kSpan) {
      const int64_t k1 = std::min(K, k0 + kSpan);
      for (int64_t j = 0; j < Width; ++j) {
        const int64_t row = g * Width + j;
        if (row < R) {
          const float* in = src + row * ld;  // read along the row, write down the group's column
          for (int64_t k = k0; k < k1; ++k) out[k * Width + j] = in[k];
        } else {
          for (int64_t k = k0; k < k1; ++k) out[k * Width + j] = 0.f;
        }
      }
    }
  }
}

void pack_transposed(const float* w, int64_t ld, float* packed, int64_t K, int64_t N, int64_t p_begin,
                     int64_t p_end) {
  interleave_rows<kPanel>(w, ld, packed, N, K, p_begin, p_end);
}

void pack_plain(const float* w, int64_t ld, float* packed, int64_t K, int64_t N, int64_t p_begin, int64_t p_end) {
  for (int64_t p = p_begin; p < p_end; ++p) {
    float* out = packed + p * K * kPanel;
    const int64_t n0 = p * kPanel, width = std::min<int64_t>(kPanel, N - n0);
    for (int64_t k = 0; k < K; ++k) {
      std::memcpy(out + k * kPanel, w + k * ld + n0, static_cast<size_t>(width) * sizeof(float));
      for (int64_t j = width; j < kPanel; ++j) out[k * kPanel + j] = 0.f;
    }
  }
}

void pack_rows(const float* x, float* packed, int64_t M, int64_t K, int64_t t_begin, int64_t t_end) {
  interleave_rows<kMR>(x, K, packed, M, K, t_begin, t_end);
}

// Inner-dimension block: each block's sum starts from zero in the registers and is then added
// to y, which keeps the rounding error of K = 2048 near at::mm's (one running sum per output
// over all of K had 7x at::mm's largest error against a double product).
constexpr int64_t kBlockK = 256;

// y[rows of tile, columns of panel] (+)= tile [Kb][kMR] x panel [Kb][kPanel]; rows <= kMR and
// columns <= kPanel are the ones that exist in y; add: y holds the earlier blocks' sum.
inline void tile_times_panel(const float* a, const float* b, float* y, int64_t K, int64_t N, int64_t rows,
                             int64_t columns, bool add) {
  vec acc[kMR][kNV];
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNV; ++j) acc[i][j] = vec{};
  for (int64_t k = 0; k < K; ++k) {
    vec bk[kNV];
    for (int j = 0; j < kNV; ++j) bk[j] = load(b + k * kPanel + j * kVec);
    const float* ak = a + k * kMR;
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNV; ++j) acc[i][j] += ak[i] * bk[j];
  }
  for (int64_t i = 0; i < rows; ++i) {
    float* out = y + i * N;
    if (columns == kPanel) {
      for (int j = 0; j < kNV; ++j) store(out + j * kVec, add ? acc[i][j] + load(out + j * kVec) : acc[i][j]);
    } else {
      float full[kPanel];
      for (int j = 0; j < kNV; ++j) store(full + j * kVec, acc[i][j]);
      for (int64_t c = 0; c < columns; ++c) out[c] = add ? out[c] + full[c] : full[c];
    }
  }
}

void gemm(const float* x_packed, const float* b_packed, float* y, int64_t M, int64_t K, int64_t N, int64_t p_begin,
          int64_t p_end) {
  const int64_t tiles = (M + kMR - 1) / kMR;
  for (int64_t p = p_begin; p < p_end; ++p) {  // a panel from memory once, then from cache per tile
    const float* b = b_packed + p * K * kPanel;
    const int64_t n0 = p * kPanel, columns = std::min<int64_t>(kPanel, N - n0);
    for (int64_t k0 = 0; k0 == 0 || k0 < K; k0 += kBlockK) {  // K = 0 still writes y (zeros)
      const int64_t kb = std::min(kBlockK, K - k0);
      for (int64_t t = 0; t < tiles; ++t)
        tile_times_panel(x_packed + (t * K + k0) * kMR, b + k0 * kPanel, y + t * kMR * N + n0, kb, N,
                         std::min<int64_t>(kMR, M - t * kMR), columns, k0 > 0);
    }
  }
}

}  // namespace

SmallGemmKernels gemm_kernels(const char* isa) {
  return {kMR, pack_transposed, pack_plain, pack_rows, gemm, isa};
}

}  // namespace satcap::kernels::SATCAP_KERNEL_NS
