// The fused attention scores (satcap/ops/attention_scores.h) against the plain tensor expression:
// values, every gradient, beams, shrinking rows and the summed gradient of a step sequence.
#include "testing.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>

#include "ops/cpu/attention_scores_kernels.h"
#include "satcap/ops/attention_scores.h"

using namespace satcap;

namespace {

struct Inputs {
  at::Tensor P, U, w, c;  // [images, n, A], [R, A], [1, A], [1]
};

Inputs make_inputs(int64_t images, int64_t n, int64_t A, int64_t R, uint64_t seed) {
  at::manual_seed(seed);
  Inputs in;
  in.P = (at::randn({images, n, A}) * 1.5).requires_grad_();
  in.U = (at::randn({R, A}) * 1.5).requires_grad_();
  in.w = at::randn({1, A}).requires_grad_();
  in.c = at::randn({1}).requires_grad_();
  return in;
}

std::vector<at::Tensor> grads_of(const at::Tensor& out, const at::Tensor& upstream, const Inputs& in) {
  return torch::autograd::grad({out}, {in.P, in.U, in.w, in.c}, {upstream});
}

void require_close(const at::Tensor& a, const at::Tensor& b, double tol) {
  INFO("max |difference| " << (a - b).abs().max().item<double>() << ", max |value| " << b.abs().max().item<double>());
  REQUIRE(a.sizes() == b.sizes());
  REQUIRE(at::allclose(a, b, tol, tol));
}

}  // namespace

TEST_CASE("the kernels' tanh is within float rounding of std::tanh", "[attention]") {
  double worst = 0;
  for (int k = -120000; k <= 120000; ++k) {
    const float x = static_cast<float>(k) * 1e-4f;  // [-12, 12]
    worst = std::max(worst, std::abs(static_cast<double>(kernels::kernel_tanh(x)) - std::tanh(static_cast<double>(x))));
  }
  INFO("max |error| " << worst);
  REQUIRE(worst < 1e-6);
  REQUIRE(kernels::kernel_tanh(0.0f) == 0.0f);
  REQUIRE(kernels::kernel_tanh(50.0f) == Approx(1.0f).margin(1e-6));
  REQUIRE(std::string(attention_scores_isa()).size() > 0);
}

TEST_CASE("fused attention scores and their gradients equal the plain expression", "[attention]") {
  for (bool relu : {false, true}) {
    for (auto [images, beam, R] : std::vector<std::array<int64_t, 3>>{{5, 1, 5}, {5, 1, 3}, {4, 3, 12}, {4, 3, 6}}) {
      INFO((relu ? "relu" : "tanh") << ", images " << images << ", beam " << beam << ", rows " << R);
      Inputs in = make_inputs(images, 7, 37, R, 3 + static_cast<uint64_t>(R));  // A = 37: vector tails
      auto fused = attention_scores(in.P, in.U, in.w, in.c, beam, relu);
      auto plain = attention_scores_reference(in.P, in.U, in.w, in.c, beam, relu);
      require_close(fused, plain, 1e-5);
      auto upstream = at::randn_like(plain);
      auto gf = grads_of(fused, upstream, in);
      auto gp = grads_of(plain, upstream, in);
      for (size_t k = 0; k < gf.size(); ++k) {
        INFO("gradient " << k << " (P, U, w, c)");
        require_close(gf[k], gp[k], 1e-4);
      }
    }
  }
}

TEST_CASE("a score sequence sums the projected features' gradient over its steps exactly once", "[attention]") {
  Inputs in = make_inputs(6, 5, 24, 6, 9);
  const std::vector<int64_t> rows = {6, 6, 4, 4, 1};  // active rows shrink, as in a packed batch
  auto run = [&](bool fused) {
    at::manual_seed(4);
    at::Tensor loss = at::zeros({});
    ScoreSequence seq(in.P, in.w, in.c, false);
    for (size_t t = 0; t < rows.size(); ++t) {
      auto hidden = in.U.narrow(0, 0, rows[t]) * (1.0 + 0.1 * static_cast<double>(t));
      auto e = fused ? seq.next(hidden) : attention_scores_reference(in.P, hidden, in.w, in.c, 1, false);
      loss = loss + (e * at::randn_like(e)).sum();
    }
    return loss;
  };
  auto plain = torch::autograd::grad({run(false)}, {in.P, in.U, in.w, in.c});
  for (int pass = 0; pass < 2; ++pass) {  // a second forward + backward starts from an empty sum
    INFO("pass " << pass);
    auto fused = torch::autograd::grad({run(true)}, {in.P, in.U, in.w, in.c});
    for (size_t k = 0; k < fused.size(); ++k) {
      INFO("gradient " << k << " (P, U, w, c)");
      require_close(fused[k], plain[k], 1e-4);
    }
  }
}

TEST_CASE("attention scores refuse rows that do not fit the images", "[attention]") {
  Inputs in = make_inputs(2, 3, 4, 7, 1);
  REQUIRE_THROWS(attention_scores(in.P, in.U, in.w, in.c, 1, false));       // 7 rows, 2 images
  REQUIRE_THROWS(attention_scores(in.P, in.U.narrow(0, 0, 5), in.w, in.c, 2, false));  // 5 rows, beam 2
}

TEST_CASE("the fused soft context and its gradient equal at::bmm", "[attention]") {
  for (auto [images, beam, R] : std::vector<std::array<int64_t, 3>>{{5, 1, 5}, {5, 1, 2}, {3, 4, 12}}) {
    INFO("images " << images << ", beam " << beam << ", rows " << R);
    at::manual_seed(static_cast<uint64_t>(R));
    auto features = at::randn({images, 9, 37});  // fixed, as in frozen-encoder training
    auto alpha = at::softmax(at::randn({R, 9}), 1).requires_grad_();
    auto fused = attention_context(features, alpha, beam);
    auto plain = attention_context_reference(features, alpha, beam);
    require_close(fused, plain, 1e-5);
    auto upstream = at::randn_like(plain);
    auto gf = torch::autograd::grad({fused}, {alpha}, {upstream})[0];
    auto gp = torch::autograd::grad({plain}, {alpha}, {upstream})[0];
    require_close(gf, gp, 1e-4);
  }
  // Features that need a gradient (fine-tuning) get one: the plain product takes over.
  auto features = at::randn({2, 3, 4}).requires_grad_();
  auto alpha = at::softmax(at::randn({2, 3}), 1);
  auto g = torch::autograd::grad({attention_context(features, alpha, 1).sum()}, {features})[0];
  require_close(g, alpha.unsqueeze(2).expand({2, 3, 4}), 1e-6);
}
