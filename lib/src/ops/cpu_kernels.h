// What the operations backed by the hand-written CPU kernels (lib/src/ops/cpu) share: which
// tensors they take, and how finely they split work across at::parallel_for's threads.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "satcap/ops/fused_kernels.h"

namespace satcap::detail {

// The kernels take CPU float32 tensors; anything else, or everything while the fused CPU kernels
// are switched off (satcap/ops/fused_kernels.h), goes to the ATen expression they replace.
inline bool cpu_float(std::initializer_list<const at::Tensor*> tensors) {
  if (!fused_cpu_kernels_enabled()) return false;
  for (const at::Tensor* t : tensors)
    if (!t->device().is_cpu() || t->scalar_type() != at::kFloat) return false;
  return true;
}

// x itself when its columns are contiguous (rows at any stride: a column block of a wider
// tensor is read in place), else a contiguous copy: what the kernels' row-stride arguments take.
inline at::Tensor unit_columns(const at::Tensor& x) { return x.stride(1) == 1 ? x : x.contiguous(); }

// Work items per parallel chunk: about 64k multiply-adds (or elements) each.
inline int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, work_per_item));
}

}  // namespace satcap::detail
