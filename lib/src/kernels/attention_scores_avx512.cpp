// The fused attention-score kernels for the avx512 instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS avx512
#include "attention_scores_impl.h"

namespace satcap::kernels {
ScoreKernels score_kernels_avx512() { return avx512::kernels("avx512"); }
}  // namespace satcap::kernels
