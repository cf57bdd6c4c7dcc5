// One Adam update as a single pass over each parameter's memory. torch::optim::Adam::step runs
// seven elementwise operations per parameter (two moment updates, sqrt, a division, an add, the
// update itself), each reading and writing whole tensors: at the paper's COCO scale (21 M
// parameters) that is about 1.3 GB of memory traffic per step, against about 0.6 GB here.
#pragma once

namespace at {
class Tensor;
}
namespace torch::optim {
class Optimizer;
class Adam;
struct AdamParamState;
}

namespace satcap {

// Does what optimizer.step() does, with the optimizer's own state (the same moment tensors and
// step counts, so its save() and load() are unchanged). CPU float32 parameters with dense
// gradients take the fused loop; anything else (amsgrad, weight decay, other devices or dtypes)
// is handed to optimizer.step() itself.
void adam_step(torch::optim::Adam& optimizer);

// The optimizer's state of one parameter (its moments and step count), or nullptr before its
// first step.
torch::optim::AdamParamState* adam_state(torch::optim::Adam& optimizer, const at::Tensor& parameter);

// Drops the gradients of every parameter of the optimizer: zero_grad(set_to_none = true) of
// LibTorch 2.x (1.13's zero_grad() fills them with zeros). The next backward then stores each
// gradient as it is computed instead of adding it to a zero-filled one: at the paper's scale that
// is 84 MB less filled and 84 MB less re-read per step. A parameter that gets no gradient is then
// skipped by the update, as in PyTorch 2.x.
void clear_grads(torch::optim::Optimizer& optimizer);

}  // namespace satcap
