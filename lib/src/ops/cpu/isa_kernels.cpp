// Every hand-written CPU kernel table for one instruction set. satcap_add_isa_kernels() in
// CMakeLists.txt compiles this file once per instruction set, with that set's flags and
// SATCAP_KERNEL_NS naming it (generic, avx2, avx512); dispatch.cpp picks the widest the CPU runs.
#ifndef SATCAP_KERNEL_NS
#error "compile with -DSATCAP_KERNEL_NS=generic|avx2|avx512 (CMakeLists.txt: satcap_add_isa_kernels)"
#endif

// small_gemm_impl.h's register blocking: floats per vector register and rows per register block,
// so that the accumulators and one row of B fit the instruction set's registers.
#if defined(__AVX512F__)
#define SATCAP_VEC 16
#define SATCAP_MR 8
#elif defined(__AVX2__)
#define SATCAP_VEC 8
#define SATCAP_MR 2
#else
#define SATCAP_VEC 4
#define SATCAP_MR 1
#endif

#include "attention_scores_impl.h"
#include "lstm_cell_impl.h"
#include "small_gemm_impl.h"
#include "token_nll_impl.h"

#define SATCAP_JOIN2(a, b) a##b
#define SATCAP_JOIN(a, b) SATCAP_JOIN2(a, b)
#define SATCAP_TEXT2(a) #a
#define SATCAP_TEXT(a) SATCAP_TEXT2(a)

namespace satcap::kernels {

ScoreKernels SATCAP_JOIN(score_kernels_, SATCAP_KERNEL_NS)() {
  return SATCAP_KERNEL_NS::kernels(SATCAP_TEXT(SATCAP_KERNEL_NS));
}
LstmCellKernels SATCAP_JOIN(lstm_cell_kernels_, SATCAP_KERNEL_NS)() {
  return SATCAP_KERNEL_NS::cell_kernels(SATCAP_TEXT(SATCAP_KERNEL_NS));
}
SmallGemmKernels SATCAP_JOIN(small_gemm_kernels_, SATCAP_KERNEL_NS)() {
  return SATCAP_KERNEL_NS::gemm_kernels(SATCAP_TEXT(SATCAP_KERNEL_NS));
}
TokenNllKernels SATCAP_JOIN(token_nll_kernels_, SATCAP_KERNEL_NS)() {
  return SATCAP_KERNEL_NS::nll_kernels(SATCAP_TEXT(SATCAP_KERNEL_NS));
}

}  // namespace satcap::kernels
