// Mixed precision (satcap/runtime/precision.h): the option, autocast's scope, and the loss scaler's rules.
#include <ATen/ATen.h>

#include <limits>

#include "satcap/runtime/error.h"
#include "satcap/runtime/loss_scaler.h"
#include "satcap/runtime/precision.h"
#include "testing.h"

using namespace satcap;

TEST_CASE("precision names parse, and fp16 is refused on the CPU", "[precision]") {
  CHECK(parse_precision("fp32") == Precision::fp32);
  CHECK(parse_precision("bf16") == Precision::bf16);
  CHECK(parse_precision("fp16") == Precision::fp16);
  for (Precision p : {Precision::fp32, Precision::bf16, Precision::fp16}) CHECK(parse_precision(precision_name(p)) == p);
  CHECK_THROWS_WITH(parse_precision("fp8"), Catch::Contains("--precision") && Catch::Contains("fp8"));
  CHECK_THROWS_AS(parse_precision("FP16"), UsageError);
  const c10::Device cpu(c10::kCPU);
  CHECK_NOTHROW(check_precision(Precision::fp32, cpu));
  CHECK_NOTHROW(check_precision(Precision::bf16, cpu));
  CHECK_THROWS_WITH(check_precision(Precision::fp16, cpu), Catch::Contains("--device cuda"));
  CHECK_THROWS_AS(AutocastScope(Precision::fp16, cpu), UsageError);
}

TEST_CASE("an autocast scope casts matrix products while it lives, and nests", "[precision]") {
  const c10::Device cpu(c10::kCPU);
  at::manual_seed(11);
  auto a = at::randn({4, 8}), b = at::randn({8, 3});
  REQUIRE(at::mm(a, b).scalar_type() == at::kFloat);
  // The product of the operands rounded to bfloat16, summed in float32: what autocast computes.
  const auto rounded = at::mm(a.to(at::kBFloat16).to(at::kFloat), b.to(at::kBFloat16).to(at::kFloat));
  {
    AutocastScope fp32(Precision::fp32, cpu);  // does nothing
    CHECK(at::mm(a, b).scalar_type() == at::kFloat);
  }
  {
    AutocastScope outer(Precision::bf16, cpu);
    auto y = at::mm(a, b);
    CHECK(y.scalar_type() == at::kBFloat16);
    // LibTorch's CPU product may round its partial sums to bfloat16 too: 8 terms of |a b| < 10, each
    // sum within about 2^-8 of its size.
    CHECK((y.to(at::kFloat) - rounded).abs().max().item<float>() < 0.15f);
    CHECK((y.to(at::kFloat) - rounded).abs().max().item<float>() < 0.05f * rounded.abs().max().item<float>());
    CHECK(at::add(a, a).scalar_type() == at::kFloat);  // pointwise operations are not cast
    {
      AutocastScope inner(Precision::bf16, cpu);
      CHECK(at::mm(a, b).scalar_type() == at::kBFloat16);
    }
    CHECK(at::mm(a, b).scalar_type() == at::kBFloat16);  // the inner scope restored the outer's state
  }
  CHECK(at::mm(a, b).scalar_type() == at::kFloat);  // off again after the outermost scope
}

TEST_CASE("the loss scaler unscales, skips steps whose gradients overflowed and adapts its scale", "[precision]") {
  auto p = at::zeros({3}).requires_grad_(true);
  auto q = at::zeros({2}).requires_grad_(true);
  auto unused = at::zeros({2}).requires_grad_(true);  // no gradient: skipped
  const std::vector<at::Tensor> params{p, q, unused};
  auto set_grads = [&](float value) {
    p.mutable_grad() = at::full({3}, value);
    q.mutable_grad() = at::full({2}, 2 * value);
  };

  SECTION("disabled: scale 1, gradients untouched, every step taken") {
    LossScaler off(false);
    CHECK(off.scale() == 1.0);
    auto loss = at::tensor(3.0f);
    CHECK(off.scaled(loss).item<float>() == 3.0f);
    set_grads(std::numeric_limits<float>::infinity());
    CHECK(off.unscale_and_update(params));
    CHECK(off.skipped() == 0);
  }
  SECTION("enabled: the loss is multiplied and the gradients divided by the scale") {
    LossScaler s(true, 8.0, 2);
    CHECK(s.scaled(at::tensor(3.0f)).item<float>() == 24.0f);
    set_grads(16.0f);
    CHECK(s.unscale_and_update(params));
    CHECK(at::equal(p.grad(), at::full({3}, 2.0f)));
    CHECK(at::equal(q.grad(), at::full({2}, 4.0f)));
    CHECK(s.scale() == 8.0);
    CHECK(s.good_steps() == 1);
    set_grads(16.0f);
    CHECK(s.unscale_and_update(params));  // the second good step in a row doubles the scale
    CHECK(s.scale() == 16.0);
    CHECK(s.good_steps() == 0);
  }
  SECTION("an inf or a NaN anywhere skips the step and halves the scale") {
    LossScaler s(true, 8.0, 2);
    set_grads(1.0f);
    CHECK(s.unscale_and_update(params));
    for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
      set_grads(1.0f);
      q.mutable_grad()[1] = bad;
      CHECK_FALSE(s.unscale_and_update(params));
    }
    CHECK(s.scale() == 2.0);
    CHECK(s.skipped() == 2);
    CHECK(s.good_steps() == 0);  // the run of good steps starts again
    s.restore(1024.0, 1);
    CHECK(s.scale() == 1024.0);
    CHECK(s.good_steps() == 1);
  }
  CHECK_THROWS_AS(LossScaler(true, 0.0), UsageError);
}
