// The fused attention-score kernels for the avx2 instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS avx2
#include "attention_scores_impl.h"

namespace satcap::kernels {
ScoreKernels score_kernels_avx2() { return avx2::kernels("avx2"); }
}  // namespace satcap::kernels
