// The packed-panel matrix product for a few dozen rows, avx2 instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS avx2
#define SATCAP_VEC 8
#define SATCAP_MR 2
#include "small_gemm_impl.h"

namespace satcap::kernels {
SmallGemmKernels small_gemm_kernels_avx2() { return avx2::gemm_kernels("avx2"); }
}  // namespace satcap::kernels
