// satcap::StepLinearSequence: per-step products whose weight gradient is one product at the end.
#include "testing.h"

#include <ATen/ATen.h>

#include <array>
#include <vector>

#include "ops/cpu/dispatch.h"
#include "ops/cpu/small_gemm_kernels.h"
#include "satcap/ops/step_linear.h"
#include "satcap/runtime/error.h"

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

TEST_CASE("the per-step products match at::mm at every row count and with ragged widths", "[decoder]") {
  at::manual_seed(10);
  for (auto [K, N] : {std::pair<int64_t, int64_t>{2048, 2048}, {37, 5}, {512, 2561}, {16, 1}}) {
    for (int64_t M : {1, 3, 4, 7, 9, 32, 33, 63, 64, 65}) {  // 65: at::mm
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

// The packed-panel kernel of every instruction set this CPU runs, not only the one dispatch picks.
TEST_CASE("the packed-panel kernel of each instruction set matches at::mm, both packings", "[decoder]") {
  using namespace satcap::kernels;
  std::vector<SmallGemmKernels> tables{small_gemm_kernels_generic()};
#if defined(__x86_64__) && defined(__GNUC__)
  if (best_isa() >= Isa::avx2) tables.push_back(small_gemm_kernels_avx2());
  if (best_isa() >= Isa::avx512) tables.push_back(small_gemm_kernels_avx512());
#endif
  at::manual_seed(11);
  for (const auto& k : tables) {
    for (auto [M, K, N] : {std::array<int64_t, 3>{1, 1, 1}, {5, 37, 70}, {8, 64, 32}, {17, 300, 33}, {64, 129, 96}}) {
      INFO(k.isa << ": M " << M << ", K " << K << ", N " << N);
      auto x = at::randn({M, K}), w = at::randn({N, K});  // y = x w^T, and y = x w^T as x (w^T) plain
      const int64_t tiles = (M + k.rows_per_tile - 1) / k.rows_per_tile;
      auto xp = at::full({tiles * k.rows_per_tile * K}, 7.f);  // not zero: packing must write every slot
      k.pack_rows(x.data_ptr<float>(), xp.data_ptr<float>(), M, K, 0, tiles);
      auto wt = w.t().contiguous();  // [K, N]
      for (bool transposed : {true, false}) {
        auto bp = at::full({panels_of(N) * K * kPanel}, 7.f);
        if (transposed) k.pack_transposed(w.data_ptr<float>(), K, bp.data_ptr<float>(), K, N, 0, panels_of(N));
        else k.pack_plain(wt.data_ptr<float>(), N, bp.data_ptr<float>(), K, N, 0, panels_of(N));
        auto y = at::full({M, N}, 7.f);
        // Two calls over halves of the panels, as two threads would split them.
        const int64_t half = panels_of(N) / 2;
        k.gemm(xp.data_ptr<float>(), bp.data_ptr<float>(), y.data_ptr<float>(), M, K, N, 0, half);
        k.gemm(xp.data_ptr<float>(), bp.data_ptr<float>(), y.data_ptr<float>(), M, K, N, half, panels_of(N));
        CHECK(at::allclose(y, at::mm(x, wt), 1e-4, 1e-4));
      }
    }
  }
}
