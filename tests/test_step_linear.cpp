// satcap::StepLinearSequence: per-step products whose weight gradient is one product at the end.
#include "testing.h"

#include <ATen/ATen.h>

#include <vector>

#include "satcap/error.h"
#include "satcap/step_linear.h"

using namespace satcap;

TEST_CASE("a step-linear sequence has the gradients of one product per step, rows announced but unused included",
          "[decoder]") {
  at::manual_seed(9);
  const std::vector<int64_t> rows{5, 4, 4, 2};
  auto weight = at::randn({6, 3}).requires_grad_();
  auto reference = weight.detach().clone().requires_grad_();
  auto x0 = at::randn({5, 3}).requires_grad_();
  auto x0_ref = x0.detach().clone().requires_grad_();
  // Announce 3 rows more than the steps use: they must add nothing (the buffers are not zeroed).
  StepLinearSequence seq(weight, 15 + 3);
  at::Tensor x = x0, xr = x0_ref, loss = at::zeros({}), loss_ref = at::zeros({});
  for (size_t t = 0; t < rows.size(); ++t) {
    auto y = seq.next(x.narrow(0, 0, rows[t]));                        // [R_t, 6]
    auto yr = at::mm(xr.narrow(0, 0, rows[t]), reference.t());
    auto w = at::randn({rows[t], 6});
    if (t != 2) {  // step 2's output reaches the loss only through the recurrence
      loss = loss + (y * w).sum();
      loss_ref = loss_ref + (yr * w).sum();
    }
    // The recurrence: the next step's input depends on this step's output.
    x = at::tanh(y.narrow(1, 0, 3));
    xr = at::tanh(yr.narrow(1, 0, 3));
  }
  loss = loss + x.sum();
  loss_ref = loss_ref + xr.sum();
  loss.backward();
  loss_ref.backward();
  CHECK(at::allclose(weight.grad(), reference.grad(), 1e-5, 1e-6));
  CHECK(at::allclose(x0.grad(), x0_ref.grad(), 1e-5, 1e-6));
  CHECK(weight.grad().abs().sum().item<double>() > 0);
  // More rows than announced, or an input that does not fit the weight, are refused.
  StepLinearSequence small(weight, 4);
  REQUIRE_THROWS_AS(small.next(at::randn({5, 3})), UsageError);
  REQUIRE_THROWS_AS(small.next(at::randn({2, 4})), UsageError);
}

TEST_CASE("the small-row kernel matches at::mm at every row count and with ragged widths", "[decoder]") {
  at::manual_seed(10);
  for (auto [K, N] : {std::pair<int64_t, int64_t>{2048, 2048}, {37, 5}, {512, 2561}, {16, 1}}) {
    for (int64_t M : {1, 3, 4, 7, 32, 33, 64}) {
      INFO("M " << M << ", K " << K << ", N " << N);
      auto weight = at::randn({N, K}).requires_grad_();
      auto reference = weight.detach().clone().requires_grad_();
      auto x = at::randn({M, K}).requires_grad_();
      auto xr = x.detach().clone().requires_grad_();
      StepLinearSequence seq(weight, M);
      auto y = seq.next(x);
      auto yr = at::mm(xr, reference.t());
      CHECK(at::allclose(y, yr, 1e-4, 1e-4));
      auto g = at::randn({M, N});
      (y * g).sum().backward();
      (yr * g).sum().backward();
      CHECK(at::allclose(x.grad(), xr.grad(), 1e-4, 1e-4));
      CHECK(at::allclose(weight.grad(), reference.grad(), 1e-4, 1e-4));
    }
  }
}
