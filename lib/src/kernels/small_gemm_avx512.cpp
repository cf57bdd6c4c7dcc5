// The packed-panel matrix product for a few dozen rows, avx512 instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS avx512
#define SATCAP_VEC 16
#define SATCAP_MR 8
#include "small_gemm_impl.h"

namespace satcap::kernels {
SmallGemmKernels small_gemm_kernels_avx512() { return avx512::gemm_kernels("avx512"); }
}  // namespace satcap::kernels
