// The packed-panel matrix product for a few dozen rows, generic instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS generic
#define SATCAP_VEC 4
#define SATCAP_MR 1
#include "small_gemm_impl.h"

namespace satcap::kernels {
SmallGemmKernels small_gemm_kernels_generic() { return generic::gemm_kernels("generic"); }
}  // namespace satcap::kernels
