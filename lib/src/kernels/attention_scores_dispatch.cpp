// Chooses the attention-score kernels for this CPU (see attention_scores_kernels.h).
#include "attention_scores_kernels.h"

namespace satcap::kernels {
namespace generic {
float tanh_of(float x);  // attention_scores_impl.h
}

const ScoreKernels& score_kernels() {
  static const ScoreKernels chosen = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
      return score_kernels_avx512();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return score_kernels_avx2();
#endif
    return score_kernels_generic();
  }();
  return chosen;
}

float kernel_tanh(float x) { return generic::tanh_of(x); }

}  // namespace satcap::kernels
