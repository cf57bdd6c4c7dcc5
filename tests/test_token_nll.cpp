// satcap::token_nll: the fused softmax NLL against log_softmax + gather, values and gradients.
#include "testing.h"

#include <ATen/ATen.h>

#include <cmath>

#include "satcap/ops/token_nll.h"
#include "satcap/runtime/error.h"
#include "ops/cpu/token_nll_kernels.h"

using namespace satcap;

TEST_CASE("the kernels' exp is within a few units in the last place of std::exp", "[loss]") {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.01237f) {
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(kernels::kernel_exp(x) - want) / want);
  }
  CHECK(worst < 4e-7);  // 2^-23 is 1.2e-7
  CHECK(kernels::kernel_exp(-1000.0f) < 1.2e-38f);
  CHECK(kernels::kernel_exp(0.0f) == 1.0f);
}

TEST_CASE("token_nll is -log_softmax(logits)[target] with its gradient, at the vocabulary's scale and beyond",
          "[loss]") {
  at::manual_seed(5);
  for (auto [N, V, scale] : {std::tuple<int64_t, int64_t, double>{37, 10000, 3.0}, {5, 7, 40.0}, {64, 513, 0.01}}) {
    INFO("N " << N << ", V " << V << ", logit scale " << scale);
    auto logits = (at::randn({N, V}) * scale).requires_grad_();
    auto targets = at::randint(V, {N}, at::kLong);
    auto nll = token_nll(logits, targets);
    auto ref_logits = logits.detach().to(at::kDouble).requires_grad_();
    auto ref = -at::log_softmax(ref_logits, 1).gather(1, targets.unsqueeze(1)).squeeze(1);
    REQUIRE(nll.sizes() == at::IntArrayRef({N}));
    CHECK(at::allclose(nll.to(at::kDouble), ref, 1e-5, 1e-5));
    auto w = at::randn({N});
    (nll * w).sum().backward();
    (ref * w.to(at::kDouble)).sum().backward();
    CHECK(at::allclose(logits.grad().to(at::kDouble), ref_logits.grad(), 1e-5, 1e-6));
  }
  // No rows: an empty result and an empty gradient.
  auto none = at::zeros({0, 9}).requires_grad_();
  auto nll = token_nll(none, at::zeros({0}, at::kLong));
  REQUIRE(nll.numel() == 0);
  nll.sum().backward();
  REQUIRE(none.grad().sizes() == at::IntArrayRef({0, 9}));
}

TEST_CASE("token_nll names a target outside the vocabulary and shapes that do not fit", "[loss]") {
  auto logits = at::randn({3, 5});
  REQUIRE_THROWS_AS(token_nll(logits, at::tensor(std::vector<int64_t>{0, 5, 1})), UsageError);
  REQUIRE_THROWS_AS(token_nll(logits, at::tensor(std::vector<int64_t>{0, -1, 1})), UsageError);
  REQUIRE_THROWS_AS(token_nll(logits, at::zeros({2}, at::kLong)), UsageError);
  REQUIRE_THROWS_AS(token_nll(logits.view({-1}), at::zeros({15}, at::kLong)), UsageError);
}
