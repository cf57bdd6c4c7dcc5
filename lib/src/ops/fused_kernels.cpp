#include "satcap/ops/fused_kernels.h"

#include <ATen/core/Tensor.h>

#include <atomic>

#include "satcap/runtime/precision.h"

namespace satcap {

namespace {
std::atomic<bool> g_fused{true};
}

bool fused_cpu_kernels_enabled() { return g_fused.load(std::memory_order_relaxed); }
void enable_fused_cpu_kernels(bool enabled) { g_fused.store(enabled, std::memory_order_relaxed); }

bool uses_fused_cpu_kernels(const at::Tensor& t) {
  return fused_cpu_kernels_enabled() && t.device().is_cpu() && t.scalar_type() == at::kFloat &&
         !autocast_enabled(c10::DeviceType::CPU);
}

}  // namespace satcap
