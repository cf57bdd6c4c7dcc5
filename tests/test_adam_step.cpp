// satcap::adam_step: the fused single-pass update against torch::optim::Adam::step.
#include "testing.h"

#include <ATen/ATen.h>
#include <torch/optim/adam.h>

#include <vector>

#include "satcap/ops/adam_step.h"

using namespace satcap;

namespace {

// Parameters of a few shapes: one large enough to be split across threads, one odd-sized.
std::vector<at::Tensor> make_params() {
  at::manual_seed(11);
  return {at::randn({317, 331}).requires_grad_(), at::randn({7}).requires_grad_(), at::randn({2, 3, 5}).requires_grad_()};
}

void set_grads(std::vector<at::Tensor>& params, int step) {
  at::manual_seed(100 + step);
  for (auto& p : params) p.mutable_grad() = at::randn(p.sizes()) * (step % 2 ? 0.01 : 3.0);
}

double max_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, (a[i] - b[i]).abs().max().item<double>());
  return d;
}

std::vector<at::Tensor> clones(const std::vector<at::Tensor>& ps) {
  std::vector<at::Tensor> out;
  for (const auto& p : ps) out.push_back(p.detach().clone().requires_grad_());
  return out;
}

}  // namespace

TEST_CASE("adam_step does what Adam::step does, with the optimizer's own state", "[optim]") {
  auto reference = make_params();
  auto fused = clones(reference);
  torch::optim::Adam a(reference, torch::optim::AdamOptions(4e-4));
  torch::optim::Adam b(fused, torch::optim::AdamOptions(4e-4));
  for (int step = 1; step <= 6; ++step) {
    set_grads(reference, step);
    set_grads(fused, step);
    a.step();
    // Steps 1-3 and 5-6 fused, step 4 Adam's own: the two share one state.
    if (step == 4) b.step();
    else adam_step(b);
    INFO("step " << step);
    CHECK(max_diff(reference, fused) < 1e-6);
  }
  CHECK(max_diff(reference, make_params()) > 1e-3);  // the parameters did move
  // The moments and step counts are Adam's: the same tensors that save() writes.
  for (size_t i = 0; i < reference.size(); ++i) {
    REQUIRE(adam_state(a, reference[i]) != nullptr);
    REQUIRE(adam_state(b, fused[i]) != nullptr);
    auto& sa = *adam_state(a, reference[i]);
    auto& sb = *adam_state(b, fused[i]);
    CHECK(sb.step() == 6);
    INFO("exp_avg max diff " << (sa.exp_avg() - sb.exp_avg()).abs().max().item<double>() << ", exp_avg_sq " << (sa.exp_avg_sq() - sb.exp_avg_sq()).abs().max().item<double>());
    CHECK(at::allclose(sa.exp_avg(), sb.exp_avg(), 1e-5, 1e-7));
    CHECK(at::allclose(sa.exp_avg_sq(), sb.exp_avg_sq(), 1e-5, 1e-10));
  }
}

TEST_CASE("adam_step hands options it does not fuse to Adam::step", "[optim]") {
  for (int variant = 0; variant < 2; ++variant) {
    auto reference = make_params();
    auto other = clones(reference);
    auto options = torch::optim::AdamOptions(1e-2);
    if (variant == 0) options.amsgrad(true);
    else options.weight_decay(0.1);
    torch::optim::Adam a(reference, options);
    torch::optim::Adam b(other, options);
    for (int step = 1; step <= 3; ++step) {
      set_grads(reference, step);
      set_grads(other, step);
      a.step();
      adam_step(b);
    }
    INFO("variant " << variant);
    CHECK(max_diff(reference, other) == 0);
    CHECK(max_diff(reference, make_params()) > 1e-3);
  }
}

TEST_CASE("clear_grads drops the gradients: the next backward stores a fresh one, and the update skips none", "[optim]") {
  auto params = make_params();
  torch::optim::Adam adam(params, torch::optim::AdamOptions(4e-4));
  auto loss = [&] { return (params[0] * params[0]).sum() + params[1].sum() + (3 * params[2]).sum(); };
  loss().backward();
  loss().backward();  // accumulated: twice the gradient
  REQUIRE(at::allclose(params[0].grad(), 4 * params[0].detach()));
  clear_grads(adam);
  for (const auto& p : params) REQUIRE_FALSE(p.grad().defined());
  loss().backward();  // stored, not added to the old one
  REQUIRE(at::allclose(params[0].grad(), 2 * params[0].detach()));
  REQUIRE(at::allclose(params[2].grad(), at::full({2, 3, 5}, 3.0f)));
  // A parameter left without a gradient is not moved; the others are.
  params[1].mutable_grad().reset();
  auto before = clones(params);
  adam_step(adam);
  REQUIRE(at::equal(params[1].detach(), before[1].detach()));
  REQUIRE_FALSE(at::equal(params[0].detach(), before[0].detach()));
}
