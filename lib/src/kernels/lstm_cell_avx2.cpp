// The fused LSTM-cell kernels for the avx2 instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS avx2
#include "lstm_cell_impl.h"

namespace satcap::kernels {
LstmCellKernels lstm_cell_kernels_avx2() { return avx2::cell_kernels("avx2"); }
}  // namespace satcap::kernels
