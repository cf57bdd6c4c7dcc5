#include "satcap/ops/lstm_cell.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
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
  if (!cpu) return lstm_cell_reference(gate_parts, c);
  const at::Tensor none = at::empty({0}, c.options());
  auto out = FusedLstmCell::apply(gate_parts[0], gate_parts.size() > 1 ? gate_parts[1] : none,
                                  gate_parts.size() > 2 ? gate_parts[2] : none, c,
                                  static_cast<int64_t>(gate_parts.size()));
  return {out[0], out[1]};
}

}  // namespace satcap
