// The fused token-NLL kernels for the avx2 instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS avx2
#include "token_nll_impl.h"

namespace satcap::kernels {
TokenNllKernels token_nll_kernels_avx2() { return avx2::nll_kernels("avx2"); }
}  // namespace satcap::kernels
