// Data-parallel gradients: after each backward pass every process holds the SUM over processes of
// its parameters' gradients, as PyTorch's DistributedDataParallel does it (LibTorch's C++ front end
// has no DDP module, and Debian's LibTorch cannot compile against c10d's Reducer).
//
// The parameters go, in reverse registration order (about the order the backward pass produces
// their gradients), into buckets of about `bucket_bytes`, each with one flat buffer: Gloo takes one
// tensor per collective (a list means one tensor per device, and equal-sized ones would be summed
// together). A post-hook on each parameter's AccumulateGrad node (it runs once the gradient is
// accumulated; LibTorch 1.13 has no post-accumulate-grad hook) copies the gradient into its bucket,
// and a complete bucket is all-reduced at once, during the rest of the backward pass. Buckets start
// strictly in order, so every process issues the same sequence of collectives. After the backward
// pass, what never arrived is sent (as zeros), then each bucket is waited for and copied back.
//
// Summed, not averaged: the loss of each process is already divided by the number of tokens of
// the whole global batch, so the sum is the gradient of the global loss, exactly what one process
// computes on the whole batch. A parameter none of the processes produced a gradient for keeps an
// undefined gradient (Adam then skips it, as in one process): each bucket also sums, per
// parameter, how many processes had one.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <memory>
#include <vector>

namespace satcap {

class Communicator;

class GradientSync {
 public:
  // The parameters must be leaves on their final device (the hooks hold their gradient nodes).
  GradientSync(Communicator& comm, std::vector<at::Tensor> parameters, std::size_t bucket_bytes);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Before each backward pass (the gradients must have been cleared or zeroed).
  void before_backward();
  // After it: every gradient is the sum over the processes.
  void after_backward();

  std::size_t buckets() const;
  // Bytes all-reduced per step (gradients and the per-parameter counts).
  std::size_t bytes_per_step() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace satcap
