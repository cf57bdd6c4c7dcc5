// y = x B for a small number of rows x (the per-step products of a recurrence: R_t rows of [z_t]
// or [h_{t-1}] against a weight of a few MB), on raw float arrays (no torch):
//
//   y[m, n] = sum_k x[m, k] * B[k, n]      x [M, K], B [K, N], y [M, N], all row-major
//
// B is packed first, once for all the steps that use it: panels of kPanel columns, each stored as
// [K][kPanel] (zero past N), so a panel is one sequential stream. x is packed per call into tiles
// of rows_per_tile rows stored as [K][rows_per_tile] (zero past M). Register blocks of
// rows_per_tile rows by one panel (on AVX-512: 8 rows by 2 vectors), over blocks of 256 of K: each
// block of a panel (32 KB) is read from memory once and then from L1 for each tile of rows, and
// the blocks' sums are added in y (the rounding error of one running sum over K = 2048 was 7x
// at::mm's).
//
// Why: at::mm (OpenBLAS) packs the whole weight on every call, which for a few dozen rows costs
// about as much as the product. Measured on the prototype with 2 threads on this project's 2-core
// machine, against at::mm in the same loop (best of 30 to 60):
//   [8, 2048] x [2048, 2048]: 0.60-0.78 ms against 1.8-2.2 ms; [32, 512] x [512, 4608]: 0.89-0.96
//   against 1.50-1.54 ms; [40, 512] x [512, 4608]: 205-228 GFLOP/s against 114-122; [64, 2048] x
//   [2048, 2048]: the same as at::mm (126-192 GFLOP/s, the machine's phase).
// Built once per instruction set (small_gemm_*.cpp, flags in CMakeLists.txt) and chosen at run
// time (dispatch.cpp).
#pragma once

#include <cstdint>

namespace satcap::kernels {

constexpr int64_t kPanel = 32;  // columns of B per packed panel (every instruction set's layout)

inline int64_t panels_of(int64_t N) { return (N + kPanel - 1) / kPanel; }

// Panels [p_begin, p_end) of B [K, N] into packed [panels_of(N)][K][kPanel], from w with rows
// `ld` floats apart (its columns contiguous):
//   pack_transposed: B = w^T, w [N, K] (the weight of y = x w^T; ld >= K);
//   pack_plain:      B = w,   w [K, N] (ld >= N).
using PackPanels = void (*)(const float* w, int64_t ld, float* packed, int64_t K, int64_t N, int64_t p_begin,
                            int64_t p_end);
// Tiles [t_begin, t_end) of x [M, K] into packed [ceil(M / rows_per_tile)][K][rows_per_tile].
using PackRows = void (*)(const float* x, float* packed, int64_t M, int64_t K, int64_t t_begin, int64_t t_end);
// Columns of y in panels [p_begin, p_end), from packed x and packed B (callers split the panels
// across threads).
using PanelGemm = void (*)(const float* x_packed, const float* b_packed, float* y, int64_t M, int64_t K, int64_t N,
                           int64_t p_begin, int64_t p_end);

struct SmallGemmKernels {
  int64_t rows_per_tile = 1;
  PackPanels pack_transposed = nullptr;
  PackPanels pack_plain = nullptr;
  PackRows pack_rows = nullptr;
  PanelGemm gemm = nullptr;
  const char* isa = "";
};

SmallGemmKernels small_gemm_kernels_generic();
SmallGemmKernels small_gemm_kernels_avx2();
SmallGemmKernels small_gemm_kernels_avx512();

// The best of the above for this CPU (chosen once, as score_kernels()).
const SmallGemmKernels& small_gemm_kernels();

}  // namespace satcap::kernels
