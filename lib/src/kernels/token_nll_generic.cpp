// The fused token-NLL kernels for the generic instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS generic
#include "token_nll_impl.h"

namespace satcap::kernels {
TokenNllKernels token_nll_kernels_generic() { return generic::nll_kernels("generic"); }
}  // namespace satcap::kernels
