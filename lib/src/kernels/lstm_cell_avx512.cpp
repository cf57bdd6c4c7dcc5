// The fused LSTM-cell kernels for the avx512 instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS avx512
#include "lstm_cell_impl.h"

namespace satcap::kernels {
LstmCellKernels lstm_cell_kernels_avx512() { return avx512::cell_kernels("avx512"); }
}  // namespace satcap::kernels
