// The small-row matrix product for the generic instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS generic
#define SATCAP_VEC 4
#define SATCAP_NB 2
#include "small_gemm_impl.h"

namespace satcap::kernels {
SmallGemmKernels small_gemm_kernels_generic() { return generic::gemm_kernels("generic"); }
}  // namespace satcap::kernels
