#include "satcap/ops/dropout.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>

#include "ops/cpu_kernels.h"

namespace satcap {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// The i-th output of splitmix64 started at `seed` (Steele, Lea and Flood 2014), top 32 bits.
inline uint32_t hashed(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return static_cast<uint32_t>((z ^ (z >> 31)) >> 32);
}

// out[i] = in[i] * scale where element i is kept (its hash >= threshold), else 0.
void masked_scale(const float* in, float* out, int64_t n, uint64_t seed, uint32_t threshold, float scale) {
  at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = hashed(seed, static_cast<uint64_t>(i)) >= threshold ? in[i] * scale : 0.0f;
  });
}

// The same over rows of `width` elements, element j of row r hashed at keys[r] * width + j.
void masked_scale_rows(const float* in, float* out, int64_t rows, int64_t width, const int64_t* keys, uint64_t seed,
                       uint32_t threshold, float scale) {
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const auto base = static_cast<uint64_t>(keys[r]) * static_cast<uint64_t>(width);
      for (int64_t j = 0; j < width; ++j) {
        const int64_t i = r * width + j;
        out[i] = hashed(seed, base + static_cast<uint64_t>(j)) >= threshold ? in[i] * scale : 0.0f;
      }
    }
  });
}

// The mask of `in` into `out`: by flat index, or by row keys when they are given.
void apply_mask(const at::Tensor& in, at::Tensor& out, const at::Tensor& keys, uint64_t seed, uint32_t threshold,
                float scale) {
  if (!keys.defined()) {
    masked_scale(in.data_ptr<float>(), out.data_ptr<float>(), in.numel(), seed, threshold, scale);
    return;
  }
  masked_scale_rows(in.data_ptr<float>(), out.data_ptr<float>(), in.size(0), in.size(1), keys.data_ptr<int64_t>(), seed,
                    threshold, scale);
}

struct HashedDropout : public torch::autograd::Function<HashedDropout> {
  // row_keys: an optional, not an undefined tensor, which autograd would take for an input variable
  // (and fail on: "tensor does not have a device").
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double p, const c10::optional<at::Tensor>& row_keys) {
    uint64_t seed;
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      seed = gen.get<at::CPUGeneratorImpl>()->random64();
    }
    const auto threshold = static_cast<uint32_t>(std::min(4294967295.0, std::ldexp(p, 32)));
    const auto scale = static_cast<float>(1.0 / (1.0 - p));
    auto in = x.contiguous();
    auto y = at::empty_like(in);
    at::Tensor keys = row_keys.has_value() ? row_keys->to(at::kLong).contiguous() : at::Tensor();
    apply_mask(in, y, keys, seed, threshold, scale);
    ctx->saved_data["keys"] = keys;
    ctx->saved_data["seed"] = static_cast<int64_t>(seed);
    ctx->saved_data["threshold"] = static_cast<int64_t>(threshold);
    ctx->saved_data["scale"] = static_cast<double>(scale);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    auto g = grads[0].contiguous();
    auto dx = at::empty_like(g);
    const c10::IValue& keys = ctx->saved_data["keys"];
    apply_mask(g, dx, keys.isTensor() ? keys.toTensor() : at::Tensor(),
               static_cast<uint64_t>(ctx->saved_data["seed"].toInt()),
               static_cast<uint32_t>(ctx->saved_data["threshold"].toInt()),
               static_cast<float>(ctx->saved_data["scale"].toDouble()));
    return {dx, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor dropout(const at::Tensor& x, double p, bool training) { return dropout(x, p, training, at::Tensor()); }

at::Tensor dropout(const at::Tensor& x, double p, bool training, const at::Tensor& row_keys) {
  TORCH_CHECK(p >= 0 && p < 1, "dropout: p must be in [0, 1), got ", p);
  if (!training || p == 0) return x;
  if (!detail::cpu_float({&x})) return at::dropout(x, p, true);
  TORCH_CHECK(!row_keys.defined() || (x.dim() == 2 && row_keys.dim() == 1 && row_keys.size(0) == x.size(0)),
              "dropout: row keys [", x.dim() == 2 ? x.size(0) : -1, "] expected for a 2-D input");
  return HashedDropout::apply(x, p, row_keys.defined() ? c10::optional<at::Tensor>(row_keys) : c10::nullopt);
}

}  // namespace satcap
