// y = x w^T for a small number of rows x (the per-step products of a recurrence: R_t rows of
// [z_t] or [h_{t-1}] against a weight of a few MB), on raw float arrays (no torch):
//
//   y[m, n] = sum_k x[m, k] * w[n, k]      x [M, K], w [N, K], y [M, N], all row-major
//
// at::mm (OpenBLAS) takes about as long for 5 rows as for 16, 2.3-2.9 ms for [5..16, 2048] x
// [2048, 2048] on this project's 2-core machine (the cost of reading and packing the whole weight
// every call), against 0.8-1.4 ms here. This reads each weight row once per call, straight from memory, and keeps x (at most a
// few hundred KB) in cache; register blocks of 4 rows of x by NB rows of w. Built once per
// instruction set (small_gemm_*.cpp, flags in CMakeLists.txt) and chosen at run time (dispatch.cpp).
#pragma once

#include <cstdint>

namespace satcap::kernels {

// Columns [n_begin, n_end) of y (callers split the columns across threads).
using SmallGemmNT = void (*)(const float* x, const float* w, float* y, int64_t M, int64_t K, int64_t N,
                             int64_t n_begin, int64_t n_end);

struct SmallGemmKernels {
  SmallGemmNT nt = nullptr;
  const char* isa = "";
};

SmallGemmKernels small_gemm_kernels_generic();
SmallGemmKernels small_gemm_kernels_avx2();
SmallGemmKernels small_gemm_kernels_avx512();

// The best of the above for this CPU (chosen once, as score_kernels()).
const SmallGemmKernels& small_gemm_kernels();

}  // namespace satcap::kernels
