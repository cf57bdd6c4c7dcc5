#include "satcap/ops/lstm_cell.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/autograd.h>

#include <string>

#include "ops/cpu_kernels.h"
#include "ops/cpu/lstm_cell_kernels.h"
#include "satcap/runtime/error.h"

namespace satcap {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

using detail::grain_for;  // rows per parallel chunk, from the row width
using detail::unit_columns;  // a split of a wider product's output is read in place

struct FusedLstmCell : public torch::autograd::Function<FusedLstmCell> {
  // The first `count` of the three gate parts are used; the others are placeholders (autograd
  // takes no undefined inputs).
  static variable_list forward(AutogradContext* ctx, const at::Tensor& p0, const at::Tensor& p1, const at::Tensor& p2,
                               const at::Tensor& c, int64_t count) {
    const at::Tensor* given[3] = {&p0, &p1, &p2};
    std::vector<at::Tensor> parts;
    for (int64_t k = 0; k < count; ++k) parts.push_back(unit_columns(*given[k]));
    auto cc = c.contiguous();
    const int64_t R = cc.size(0), H = cc.size(1);
    auto h_out = at::empty({R, H}, cc.options());       // [R, H]
    auto c_out = at::empty({R, H}, cc.options());       // [R, H]
    auto gates = at::empty({R, 4 * H}, cc.options());   // [R, 4H]  i, f, g, o
    auto tanh_c = at::empty({R, H}, cc.options());      // [R, H]
    kernels::LstmCellForwardArgs a;
    for (std::size_t k = 0; k < parts.size(); ++k) {
      a.parts[k] = parts[k].data_ptr<float>();
      a.part_ld[k] = parts[k].stride(0);
    }
    a.c = cc.data_ptr<float>();
    a.hidden = H;
    a.h_out = h_out.data_ptr<float>();
    a.c_out = c_out.data_ptr<float>();
    a.gates = gates.data_ptr<float>();
    a.tanh_c = tanh_c.data_ptr<float>();
    const auto& k = kernels::lstm_cell_kernels();
    at::parallel_for(0, R, grain_for(4 * H), [&](int64_t b, int64_t e) { k.forward(a, b, e); });
    ctx->set_materialize_grads(false);  // an unused h' or c' (the last step's c') sends no zeros
    ctx->save_for_backward({cc, gates, tanh_c});
    ctx->saved_data["parts"] = count;
    return {h_out, c_out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &c = saved[0], &gates = saved[1], &tanh_c = saved[2];
    const at::Tensor none;
    const auto parts = static_cast<std::size_t>(ctx->saved_data["parts"].toInt());
    if (!grads[0].defined() && !grads[1].defined()) return variable_list(5);
    const int64_t R = c.size(0), H = c.size(1);
    const at::Tensor dh = grads[0].defined() ? grads[0].contiguous() : none;
    const at::Tensor dc = grads[1].defined() ? grads[1].contiguous() : none;
    auto dgates = at::empty({R, 4 * H}, c.options());  // [R, 4H]
    auto dc_in = at::empty({R, H}, c.options());       // [R, H]
    kernels::LstmCellBackwardArgs a;
    a.grad_h = dh.defined() ? dh.data_ptr<float>() : nullptr;
    a.grad_c = dc.defined() ? dc.data_ptr<float>() : nullptr;
    a.c = c.data_ptr<float>();
    a.gates = gates.data_ptr<float>();
    a.tanh_c = tanh_c.data_ptr<float>();
    a.hidden = H;
    a.grad_gates = dgates.data_ptr<float>();
    a.grad_c_in = dc_in.data_ptr<float>();
    const auto& k = kernels::lstm_cell_kernels();
    at::parallel_for(0, R, grain_for(4 * H), [&](int64_t b, int64_t e) { k.backward(a, b, e); });
    // Every part's gradient is the gates' (the same tensor: autograd only reads incoming gradients).
    return {dgates, parts > 1 ? dgates : none, parts > 2 ? dgates : none, dc_in, none};
  }
};

// The same cell on any device (what CUDA runs), as few ATen operations as the arithmetic allows:
// forward six after the parts' sum (one sigmoid over all four gates, tanh of g, c' = f c + i g as a
// product and an addcmul, tanh c', h' = o tanh c'), backward at most ten, where autograd's backward
// of the plain expression (lstm_cell_reference) runs about twice as many. On CUDA, with one part,
// ATen's fused LSTM-cell kernel (one launch each way) takes over.
struct GenericLstmCell : public torch::autograd::Function<GenericLstmCell> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& p0, const at::Tensor& p1, const at::Tensor& p2,
                               const at::Tensor& c, int64_t count) {
    at::Tensor a = p0;  // [R, 4H]  the gates' pre-activations: i, f, g, o
    if (count > 1) a = a + p1;
    if (count > 2) a = a + p2;
    const int64_t H = c.size(1);
    auto s = at::sigmoid(a);                  // [R, 4H]  i, f, o (the g slot is not used)
    auto g = at::tanh(a.narrow(1, 2 * H, H));  // [R, H]
    auto c_new = at::mul(s.narrow(1, H, H), c).addcmul_(s.narrow(1, 0, H), g);  // f c + i g
    auto tanh_c = at::tanh(c_new);
    auto h_new = at::mul(s.narrow(1, 3 * H, H), tanh_c);
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({c, s, g, tanh_c});
    ctx->saved_data["parts"] = count;
    return {h_new, c_new};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &c = saved[0], &s = saved[1], &g = saved[2], &tanh_c = saved[3];
    const auto parts = ctx->saved_data["parts"].toInt();
    const at::Tensor &dh = grads[0], &dc = grads[1];
    if (!dh.defined() && !dc.defined()) return variable_list(5);
    const int64_t H = c.size(1);
    auto gate = [&](int64_t k) { return s.narrow(1, k * H, H); };  // 0 i, 1 f, 3 o
    // dL/dc' = dc + dh o (1 - tanh^2 c')
    at::Tensor dcs = dh.defined() ? at::tanh_backward(dh * gate(3), tanh_c) : dc;
    if (dh.defined() && dc.defined()) dcs.add_(dc);
    // The gates' gradients before their activations: sigmoid's derivative for i, f, o, tanh's for g.
    auto upstream = at::empty_like(s);  // [R, 4H]  dL/d(activation)
    auto slot = [&](const at::Tensor& x, int64_t k) { return x.narrow(1, k * H, H); };
    at::Tensor up_i = slot(upstream, 0), up_f = slot(upstream, 1), up_g = slot(upstream, 2), up_o = slot(upstream, 3);
    at::mul_out(up_i, dcs, g);
    at::mul_out(up_f, dcs, c);
    at::mul_out(up_g, dcs, gate(0));
    if (dh.defined()) at::mul_out(up_o, dh, tanh_c);
    else up_o.zero_();
    auto da = at::sigmoid_backward(upstream, s);  // right for i, f, o
    at::Tensor da_g = slot(da, 2);
    at::tanh_backward_out(da_g, up_g, g);  // and g's
    auto dc_in = dcs * gate(1);
    return {da, parts > 1 ? da : at::Tensor(), parts > 2 ? da : at::Tensor(), dc_in, at::Tensor()};
  }
};

void check_shapes(const std::vector<at::Tensor>& parts, const at::Tensor& c) {
  auto shape = [](const at::Tensor& x) { return x.defined() ? c10::str(x.sizes()) : std::string("undefined"); };
  bool ok = !parts.empty() && parts.size() <= 3 && c.defined() && c.dim() == 2;
  for (const auto& p : parts)
    ok = ok && p.defined() && p.dim() == 2 && p.size(0) == c.size(0) && p.size(1) == 4 * c.size(1);
  if (ok) return;
  std::string got;
  for (const auto& p : parts) got += (got.empty() ? "" : ", ") + shape(p);
  throw UsageError("lstm_cell: " + std::to_string(parts.size()) + " gate parts (" + got + ") and c " + shape(c) +
                   " do not fit one to three [R, 4H] and [R, H]");
}

}  // namespace

std::pair<at::Tensor, at::Tensor> lstm_cell_reference(const std::vector<at::Tensor>& gate_parts, const at::Tensor& c) {
  check_shapes(gate_parts, c);
  at::Tensor gates = gate_parts[0];
  for (std::size_t k = 1; k < gate_parts.size(); ++k) gates = gates + gate_parts[k];
  auto g = gates.chunk(4, 1);  // [R, H] each: i, f, g, o
  auto c_new = at::sigmoid(g[1]) * c + at::sigmoid(g[0]) * at::tanh(g[2]);  // [R, H]
  auto h_new = at::sigmoid(g[3]) * at::tanh(c_new);                        // [R, H]
  return {h_new, c_new};
}

std::pair<at::Tensor, at::Tensor> lstm_cell(const std::vector<at::Tensor>& gate_parts, const at::Tensor& c) {
  check_shapes(gate_parts, c);
  bool cpu = detail::cpu_float({&c});
  for (const auto& p : gate_parts) cpu = cpu && detail::cpu_float({&p});
  const at::Tensor none = at::empty({0}, c.options());
  if (!cpu) {
    // A record scope of its own, so that `satcap bench --only ops` can tell the cell's operations
    // from the rest of the step (its backward node is recorded by the autograd engine).
    RECORD_FUNCTION("satcap::lstm_cell", std::vector<c10::IValue>());
    bool same_type = true;
    for (const auto& p : gate_parts) same_type = same_type && p.scalar_type() == c.scalar_type();
    if (c.is_cuda() && gate_parts.size() <= 2 && same_type) {
      // ATen's CUDA kernel sums two gate parts and computes h', c' in one launch (and its backward
      // in one more; the generic training forward hands it two parts on CUDA).
      auto out = at::_thnn_fused_lstm_cell(gate_parts[0],
                                           gate_parts.size() > 1 ? gate_parts[1] : at::zeros_like(gate_parts[0]), c);
      return {std::get<0>(out), std::get<1>(out)};
    }
    auto out = GenericLstmCell::apply(gate_parts[0], gate_parts.size() > 1 ? gate_parts[1] : none,
                                      gate_parts.size() > 2 ? gate_parts[2] : none, c,
                                      static_cast<int64_t>(gate_parts.size()));
    return {out[0], out[1]};
  }
  auto out = FusedLstmCell::apply(gate_parts[0], gate_parts.size() > 1 ? gate_parts[1] : none,
                                  gate_parts.size() > 2 ? gate_parts[2] : none, c,
                                  static_cast<int64_t>(gate_parts.size()));
  return {out[0], out[1]};
}

}  // namespace satcap
