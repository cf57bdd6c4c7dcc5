// Chooses the hand-written kernels for this CPU (attention_scores_kernels.h, token_nll_kernels.h,
// small_gemm_kernels.h, lstm_cell_kernels.h): the widest instruction set it has of avx512, avx2 and
// generic, once for all of them.
#include "dispatch.h"

#include "attention_scores_kernels.h"
#include "lstm_cell_kernels.h"
#include "small_gemm_kernels.h"
#include "token_nll_kernels.h"

namespace satcap::kernels {
namespace generic {
float tanh_of(float x);  // attention_scores_impl.h
float exp_of(float x);   // token_nll_impl.h
}

Isa best_isa() {
  static const Isa chosen = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
      return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
    return Isa::generic;
  }();
  return chosen;
}

namespace {

// The table of the widest instruction set this CPU has; the avx2 and avx512 builds exist on x86-64 only.
template <typename Table>
Table widest(Table (*avx512)(), Table (*avx2)(), Table (*generic)()) {
  if (best_isa() == Isa::avx512) return avx512();
  if (best_isa() == Isa::avx2) return avx2();
  return generic();
}
#if defined(__x86_64__) && defined(__GNUC__)
#define SATCAP_WIDEST(family) widest(family##_avx512, family##_avx2, family##_generic)
#else
#define SATCAP_WIDEST(family) family##_generic()
#endif

}  // namespace

const ScoreKernels& score_kernels() {
  static const ScoreKernels chosen = SATCAP_WIDEST(score_kernels);
  return chosen;
}

const TokenNllKernels& token_nll_kernels() {
  static const TokenNllKernels chosen = SATCAP_WIDEST(token_nll_kernels);
  return chosen;
}

const LstmCellKernels& lstm_cell_kernels() {
  static const LstmCellKernels chosen = SATCAP_WIDEST(lstm_cell_kernels);
  return chosen;
}

const SmallGemmKernels& small_gemm_kernels() {
  static const SmallGemmKernels chosen = SATCAP_WIDEST(small_gemm_kernels);
  return chosen;
}

float kernel_tanh(float x) { return generic::tanh_of(x); }
float kernel_exp(float x) { return generic::exp_of(x); }

}  // namespace satcap::kernels
