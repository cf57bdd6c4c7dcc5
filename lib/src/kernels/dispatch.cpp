// Chooses the hand-written kernels for this CPU (attention_scores_kernels.h, token_nll_kernels.h,
// small_gemm_kernels.h):
// the widest instruction set it has of avx512, avx2 and generic, once for all of them.
#include "attention_scores_kernels.h"
#include "small_gemm_kernels.h"
#include "token_nll_kernels.h"

namespace satcap::kernels {
namespace generic {
float tanh_of(float x);  // attention_scores_impl.h
float exp_of(float x);   // token_nll_impl.h
}

namespace {

enum class Isa { generic, avx2, avx512 };

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

}  // namespace

const ScoreKernels& score_kernels() {
  static const ScoreKernels chosen = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    if (best_isa() == Isa::avx512) return score_kernels_avx512();
    if (best_isa() == Isa::avx2) return score_kernels_avx2();
#endif
    return score_kernels_generic();
  }();
  return chosen;
}

const TokenNllKernels& token_nll_kernels() {
  static const TokenNllKernels chosen = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    if (best_isa() == Isa::avx512) return token_nll_kernels_avx512();
    if (best_isa() == Isa::avx2) return token_nll_kernels_avx2();
#endif
    return token_nll_kernels_generic();
  }();
  return chosen;
}

const SmallGemmKernels& small_gemm_kernels() {
  static const SmallGemmKernels chosen = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    if (best_isa() == Isa::avx512) return small_gemm_kernels_avx512();
    if (best_isa() == Isa::avx2) return small_gemm_kernels_avx2();
#endif
    return small_gemm_kernels_generic();
  }();
  return chosen;
}

float kernel_tanh(float x) { return generic::tanh_of(x); }
float kernel_exp(float x) { return generic::exp_of(x); }

}  // namespace satcap::kernels
