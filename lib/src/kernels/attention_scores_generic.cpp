// The fused attention-score kernels for the generic instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS generic
#include "attention_scores_impl.h"

namespace satcap::kernels {
ScoreKernels score_kernels_generic() { return generic::kernels("generic"); }
}  // namespace satcap::kernels
