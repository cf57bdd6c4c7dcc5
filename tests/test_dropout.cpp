// satcap::dropout: the hashed mask, its statistics, its gradient and its reproducibility.
#include "testing.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "satcap/ops/dropout.h"

using namespace satcap;

TEST_CASE("dropout keeps about 1 - p of the elements, scaled by 1 / (1 - p), and its gradient uses the same mask",
          "[dropout]") {
  for (double p : {0.5, 0.1, 0.9}) {
    INFO("p " << p);
    at::manual_seed(3);
    const int64_t n = 400000;
    auto x = (at::rand({n / 500, 500}) + 0.5).requires_grad_();  // no zeros: a zero output means dropped
    auto y = satcap::dropout(x, p, true);
    REQUIRE(y.sizes() == x.sizes());
    auto kept = y.detach() != 0;
    const double fraction = kept.to(at::kDouble).mean().item<double>();
    // Binomial: the standard deviation of the fraction is sqrt(p (1 - p) / n) < 0.0008.
    CHECK(std::abs(fraction - (1 - p)) < 0.004);
    // Kept elements are x / (1 - p).
    auto ratio = y.detach().masked_select(kept) / x.detach().masked_select(kept);
    CHECK(at::allclose(ratio, at::full_like(ratio, 1 / (1 - p)), 1e-5, 1e-6));
    // No long runs: both halves of every row keep about the same share (a hash of the index, not a pattern).
    auto halves = kept.to(at::kDouble).view({-1, 2, 250}).mean(2).mean(0);
    CHECK(std::abs(halves[0].item<double>() - halves[1].item<double>()) < 0.01);
    // d(sum(y * w))/dx = w * m / (1 - p): the forward's mask.
    auto w = at::randn(x.sizes());
    (y * w).sum().backward();
    auto expected = w * kept.to(at::kFloat) / (1 - p);
    CHECK(at::allclose(x.grad(), expected, 1e-5, 1e-6));
  }
}

TEST_CASE("dropout's mask follows the generator's seed, not the thread count, eval and p = 0 pass x through",
          "[dropout]") {
  auto x = at::rand({300, 700}) + 0.5;
  at::manual_seed(7);
  auto a = satcap::dropout(x, 0.5, true);
  auto b = satcap::dropout(x, 0.5, true);
  CHECK_FALSE(at::equal(a, b));  // each call draws its own seed
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  at::manual_seed(7);
  auto a1 = satcap::dropout(x, 0.5, true);
  at::set_num_threads(threads);
  CHECK(at::equal(a, a1));
  CHECK(satcap::dropout(x, 0.5, false).is_same(x));
  CHECK(satcap::dropout(x, 0.0, true).is_same(x));
  // Other dtypes take at::dropout: the same contract.
  auto xd = x.to(at::kDouble);
  auto yd = satcap::dropout(xd, 0.5, true);
  auto keptd = yd != 0;
  CHECK(at::allclose(yd.masked_select(keptd), 2 * xd.masked_select(keptd)));
  CHECK_THROWS(satcap::dropout(x, 1.0, true));
}
