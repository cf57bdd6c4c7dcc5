// The fused token-NLL kernels for the avx512 instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS avx512
#include "token_nll_impl.h"

namespace satcap::kernels {
TokenNllKernels token_nll_kernels_avx512() { return avx512::nll_kernels("avx512"); }
}  // namespace satcap::kernels
