// Dropout whose mask is never stored: each element's keep/drop decision is a hash of a seed drawn
// once per call from LibTorch's CPU generator and of the element's index (the splitmix64 sequence),
// so the backward recomputes it. One pass forward, one pass backward, no [.] mask tensor, and the
// same mask whatever the thread count. at::dropout draws a Bernoulli per element from one
// generator behind a lock: about 20 ns per element here, 17 ms per training step at the paper's
// COCO scale against about 1 ms for this.
#pragma once

namespace at {
class Tensor;
}

namespace satcap {

// y = x * m / (1 - p) with m_i ~ Bernoulli(1 - p) when training and p > 0, else x itself. CPU
// float32 tensors take the hashed mask; anything else (CUDA, other dtypes) takes at::dropout.
at::Tensor dropout(const at::Tensor& x, double p, bool training);
// The same for x [R, W] whose rows are rows of a larger whole: element (r, j) is hashed at
// row_keys[r] * W + j instead of its own index r * W + j ([R] int64). A row's mask then depends on
// its place in the whole, not in x: data-parallel training gives each process some rows of a
// global batch, and each row gets the mask it gets when one process trains on all of them (with
// keys 0 .. R-1, the same mask as without keys).
at::Tensor dropout(const at::Tensor& x, double p, bool training, const at::Tensor& row_keys);

}  // namespace satcap
