// Whether the fused operations (satcap/ops) use satcap's hand-written CPU kernels for CPU float32
// tensors (the default), or the device-generic ATen expressions that CUDA and other devices run.
// Switching them off on the CPU shows, and counts, what a GPU executes: `satcap bench`'s operation
// count and the tests that compare the two paths use it. Process-wide; not meant to be flipped while
// a step runs. No torch here.
#pragma once

namespace at {
class Tensor;
}

namespace satcap {

bool fused_cpu_kernels_enabled();
void enable_fused_cpu_kernels(bool enabled);

// Whether operations on tensors like `t` take the CPU kernels: enabled, a CPU float32 tensor, and no
// autocast on the CPU (which runs the products in bfloat16). What the decoder's training forward
// shapes its per-step work by.
bool uses_fused_cpu_kernels(const at::Tensor& t);

// Switches them off for its lifetime, then restores what was in force.
class GenericOpsScope {
 public:
  GenericOpsScope() : was_(fused_cpu_kernels_enabled()) { enable_fused_cpu_kernels(false); }
  ~GenericOpsScope() { enable_fused_cpu_kernels(was_); }
  GenericOpsScope(const GenericOpsScope&) = delete;
  GenericOpsScope& operator=(const GenericOpsScope&) = delete;

 private:
  bool was_;
};

}  // namespace satcap
