// satcap::lstm_cell: the fused LSTM cell against LSTMCell's ATen expression in double precision,
// values and gradients, for every instruction set's kernels this CPU runs.
#include "testing.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/rnn.h>

#include <vector>

#include "satcap/ops/lstm_cell.h"
#include "satcap/runtime/error.h"
#include "ops/cpu/dispatch.h"
#include "ops/cpu/lstm_cell_kernels.h"

using namespace satcap;

namespace {

// LSTMCell's pointwise part in double: the reference for the float kernels.
std::pair<at::Tensor, at::Tensor> cell_in_double(const at::Tensor& gates, const at::Tensor& c) {
  auto g = gates.chunk(4, 1);
  auto c_new = at::sigmoid(g[1]) * c + at::sigmoid(g[0]) * at::tanh(g[2]);
  return {at::sigmoid(g[3]) * at::tanh(c_new), c_new};
}

}  // namespace

TEST_CASE("lstm_cell matches LSTMCell's expression, values and gradients, with one to three strided parts",
          "[decoder]") {
  at::manual_seed(3);
  for (auto [R, H, parts] : {std::tuple<int64_t, int64_t, int>{64, 512, 3}, {7, 33, 2}, {1, 1, 1}, {40, 256, 3}}) {
    INFO("R " << R << ", H " << H << ", parts " << parts);
    // The parts as the decoder passes them: contiguous, and a column slice of a wider product.
    std::vector<at::Tensor> leaves, inputs;
    for (int k = 0; k < parts; ++k) {
      auto wide = (at::randn({R, 4 * H + (k == 2 ? 5 : 0)}) * 3).requires_grad_();  // large enough to saturate
      leaves.push_back(wide);
      inputs.push_back(k == 2 ? wide.narrow(1, 5, 4 * H) : wide);
    }
    auto c = at::randn({R, H}).requires_grad_();
    auto [h, c_new] = lstm_cell(inputs, c);
    REQUIRE(h.sizes() == at::IntArrayRef({R, H}));
    REQUIRE(c_new.sizes() == at::IntArrayRef({R, H}));

    std::vector<at::Tensor> ref_leaves;
    at::Tensor gates;
    for (int k = 0; k < parts; ++k) {
      ref_leaves.push_back(leaves[static_cast<size_t>(k)].detach().to(at::kDouble).requires_grad_());
      auto part = k == 2 ? ref_leaves.back().narrow(1, 5, 4 * H) : ref_leaves.back();
      gates = gates.defined() ? gates + part : part;
    }
    auto ref_c = c.detach().to(at::kDouble).requires_grad_();
    auto [ref_h, ref_c_new] = cell_in_double(gates, ref_c);
    CHECK(at::allclose(h.to(at::kDouble), ref_h, 1e-5, 1e-6));
    CHECK(at::allclose(c_new.to(at::kDouble), ref_c_new, 1e-5, 1e-6));

    auto wh = at::randn({R, H}), wc = at::randn({R, H});
    ((h * wh).sum() + (c_new * wc).sum()).backward();
    ((ref_h * wh.to(at::kDouble)).sum() + (ref_c_new * wc.to(at::kDouble)).sum()).backward();
    // 3e-6: beyond |x| = 7.905 the kernels' tanh is exactly +-1 where float's std::tanh still leaves
    // 1 - g^2 up to 5.4e-7, times a gradient of a few units here (ATen's float cell: 6e-7 off).
    for (int k = 0; k < parts; ++k) {
      const auto& got = leaves[static_cast<size_t>(k)].grad();
      REQUIRE(got.defined());
      CHECK(at::allclose(got.to(at::kDouble), ref_leaves[static_cast<size_t>(k)].grad(), 1e-5, 3e-6));
    }
    CHECK(at::allclose(c.grad().to(at::kDouble), ref_c.grad(), 1e-5, 3e-6));
  }
}

TEST_CASE("lstm_cell: a gradient for h' alone or c' alone, and the reference path, agree with ATen", "[decoder]") {
  at::manual_seed(4);
  const int64_t R = 9, H = 17;
  for (int which = 0; which < 2; ++which) {
    INFO((which == 0 ? "h' only" : "c' only"));
    auto a = at::randn({R, 4 * H}).requires_grad_(), b = at::randn({R, 4 * H}).requires_grad_();
    auto c = at::randn({R, H}).requires_grad_();
    auto [h, cn] = lstm_cell({a, b}, c);
    (which == 0 ? h : cn).pow(2).sum().backward();
    auto a2 = a.detach().clone().requires_grad_(), b2 = b.detach().clone().requires_grad_();
    auto c2 = c.detach().clone().requires_grad_();
    auto [h2, cn2] = lstm_cell_reference({a2, b2}, c2);
    (which == 0 ? h2 : cn2).pow(2).sum().backward();
    CHECK(at::allclose(a.grad(), a2.grad(), 1e-5, 1e-6));
    CHECK(at::allclose(b.grad(), b2.grad(), 1e-5, 1e-6));
    CHECK(at::allclose(c.grad(), c2.grad(), 1e-5, 1e-6));
  }
  // The reference is LibTorch's own LSTMCell when the parts are its products.
  torch::nn::LSTMCell cell(6, 5);
  auto x = at::randn({4, 6}), h0 = at::randn({4, 5}), c0 = at::randn({4, 5});
  auto [want_h, want_c] = cell->forward(x, std::make_tuple(h0, c0));
  auto parts = std::vector<at::Tensor>{at::linear(x, cell->weight_ih, cell->bias_ih),
                                       at::linear(h0, cell->weight_hh, cell->bias_hh)};
  auto [got_h, got_c] = lstm_cell(parts, c0);
  CHECK(at::allclose(got_h, want_h, 1e-5, 1e-6));
  CHECK(at::allclose(got_c, want_c, 1e-5, 1e-6));
  // No rows.
  auto [h_none, c_none] = lstm_cell({at::zeros({0, 8})}, at::zeros({0, 2}));
  CHECK(h_none.sizes() == at::IntArrayRef({0, 2}));
}

TEST_CASE("every instruction set's LSTM-cell kernels this CPU runs give the same cell", "[decoder]") {
  using namespace kernels;
  std::vector<LstmCellKernels> tables{lstm_cell_kernels_generic()};
#if defined(__x86_64__) && defined(__GNUC__)
  if (best_isa() >= Isa::avx2) tables.push_back(lstm_cell_kernels_avx2());
  if (best_isa() >= Isa::avx512) tables.push_back(lstm_cell_kernels_avx512());
#endif
  at::manual_seed(6);
  const int64_t R = 5, H = 37;  // not a multiple of any vector width
  auto gates = at::randn({R, 4 * H}, at::kDouble) * 4, c = at::randn({R, H}, at::kDouble);
  auto dh = at::randn({R, H}, at::kDouble), dc = at::randn({R, H}, at::kDouble);
  auto g = gates.clone().requires_grad_(), cr = c.clone().requires_grad_();
  auto [ref_h, ref_c] = cell_in_double(g, cr);
  ((ref_h * dh).sum() + (ref_c * dc).sum()).backward();
  for (const auto& k : tables) {
    INFO("kernels " << k.isa);
    auto gf = gates.to(at::kFloat), cf = c.to(at::kFloat), dhf = dh.to(at::kFloat), dcf = dc.to(at::kFloat);
    auto h = at::empty({R, H}), cn = at::empty({R, H}), act = at::empty({R, 4 * H}), t = at::empty({R, H});
    LstmCellForwardArgs f;
    f.parts[0] = gf.data_ptr<float>();
    f.part_ld[0] = 4 * H;
    f.c = cf.data_ptr<float>();
    f.hidden = H;
    f.h_out = h.data_ptr<float>();
    f.c_out = cn.data_ptr<float>();
    f.gates = act.data_ptr<float>();
    f.tanh_c = t.data_ptr<float>();
    k.forward(f, 0, 2);  // rows in two ranges, as parallel_for splits them
    k.forward(f, 2, R);
    CHECK(at::allclose(h.to(at::kDouble), ref_h, 1e-5, 1e-6));
    CHECK(at::allclose(cn.to(at::kDouble), ref_c, 1e-5, 1e-6));
    auto dg = at::empty({R, 4 * H}), dci = at::empty({R, H});
    LstmCellBackwardArgs b;
    b.grad_h = dhf.data_ptr<float>();
    b.grad_c = dcf.data_ptr<float>();
    b.c = cf.data_ptr<float>();
    b.gates = act.data_ptr<float>();
    b.tanh_c = t.data_ptr<float>();
    b.hidden = H;
    b.grad_gates = dg.data_ptr<float>();
    b.grad_c_in = dci.data_ptr<float>();
    k.backward(b, 0, 3);
    k.backward(b, 3, R);
    CHECK(at::allclose(dg.to(at::kDouble), g.grad(), 1e-5, 3e-6));
    CHECK(at::allclose(dci.to(at::kDouble), cr.grad(), 1e-5, 3e-6));
  }
}

TEST_CASE("lstm_cell names parts and states that do not fit", "[decoder]") {
  auto c = at::randn({3, 4});
  REQUIRE_THROWS_AS(lstm_cell({}, c), UsageError);
  REQUIRE_THROWS_AS(lstm_cell({at::randn({3, 15})}, c), UsageError);
  REQUIRE_THROWS_AS(lstm_cell({at::randn({2, 16})}, c), UsageError);
  REQUIRE_THROWS_AS(lstm_cell({at::randn({3, 16}), at::randn({3, 16}), at::randn({3, 16}), at::randn({3, 16})}, c),
                    UsageError);
  REQUIRE_THROWS_AS(lstm_cell_reference({at::randn({3, 16})}, at::randn({12})), UsageError);
}
