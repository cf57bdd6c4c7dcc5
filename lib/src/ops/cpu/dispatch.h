// The instruction sets the hand-written kernels are built for (lib/src/kernels/*_{generic,avx2,
// avx512}.cpp), widest last, and the widest this CPU runs (dispatch.cpp), which every
// *_kernels() table is chosen by. A table of a wider set than best_isa() must not be called.
#pragma once

namespace satcap::kernels {

enum class Isa { generic, avx2, avx512 };

Isa best_isa();

}  // namespace satcap::kernels
