// The fused LSTM-cell kernels for the generic instruction set (flags: CMakeLists.txt).
#define SATCAP_KERNEL_NS generic
#include "lstm_cell_impl.h"

namespace satcap::kernels {
LstmCellKernels lstm_cell_kernels_generic() { return generic::cell_kernels("generic"); }
}  // namespace satcap::kernels
