// The negative log-likelihood of each row's target under a softmax over its logits,
// -log softmax(logits[r])[targets[r]], as one autograd operation. log_softmax followed by gather
// writes the [N, V] log-probabilities in the forward and, in the backward, a zero-filled [N, V]
// for the gather and then the log-softmax gradient: at the paper's COCO scale (N about 770 tokens
// per batch, V = 10,000) three 31 MB passes more than the one pass each way here.
#pragma once

namespace at {
class Tensor;
}

namespace satcap {

// logits [N, V] float, targets [N] int64 in [0, V) -> [N]. CPU float32 logits take the fused
// kernels (lib/src/kernels/token_nll_kernels.h); anything else takes log_softmax and gather.
// Throws UsageError for a target outside [0, V) or shapes that do not fit.
at::Tensor token_nll(const at::Tensor& logits, const at::Tensor& targets);

}  // namespace satcap
