// The ATen operations the training step dispatches per decoder time step on the device-generic
// path (bench.h: count_step_ops), and the bench part that reports them.
#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "bench/measure.h"
#include "satcap/model/decoder.h"
#include "satcap/ops/fused_kernels.h"
#include "satcap/train/step.h"

namespace satcap {

namespace {

// Operations that only make a view or allocate: no kernel runs for them on a GPU.
bool computes(const std::string& name) {
  static const std::set<std::string> no_kernel = {
      "aten::view", "aten::_unsafe_view", "aten::reshape", "aten::narrow", "aten::slice", "aten::select",
      "aten::as_strided", "aten::expand", "aten::expand_as", "aten::unsqueeze", "aten::squeeze", "aten::permute",
      "aten::transpose", "aten::t", "aten::split", "aten::split_with_sizes", "aten::unbind", "aten::chunk",
      "aten::detach", "aten::alias", "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::resize_",
      "aten::lift_fresh", "aten::view_as", "aten::numpy_T", "aten::contiguous", "aten::_reshape_alias",
      "aten::to", "aten::_to_copy", "aten::result_type", "aten::item", "aten::_local_scalar_dense",
      "aten::is_nonzero", "aten::size", "aten::stride", "aten::dim", "aten::set_", "aten::new_empty",
      "aten::new_empty_strided", "aten::resolve_conj", "aten::resolve_neg", "aten::conj"};
  return no_kernel.count(name) == 0;
}

// What the RecordFunction callbacks collect: every ATen operation the dispatcher ran, and by name
// the outermost ones: those called by satcap's code or by the autograd engine, not from inside
// another ATen operation (aten::linear's aten::addmm is part of the linear call). Each outermost
// call is one or more kernel launches on a GPU, unless it only makes a view or allocates.
// The LSTM cell's own operations are tallied apart too: those inside satcap::lstm_cell's record
// scope (the forward, lib/src/ops/lstm_cell.cpp) and inside its autograd node's backward.
struct Tally {
  std::mutex mutex;
  int64_t dispatched = 0;
  std::map<std::string, int64_t> outermost, outermost_in_cell;
};
Tally* g_tally = nullptr;
thread_local int t_aten_depth = 0;
thread_local int t_cell_depth = 0;

struct Frame : at::ObserverContext {
  std::string name;
  bool aten = false;
  bool outermost = false;
  bool cell = false;  // opens the cell's scope
  bool in_cell = false;
};

bool is_cell_scope(const std::string& name) {
  return name == "satcap::lstm_cell" || name.find("GenericLstmCell") != std::string::npos;
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  auto frame = std::make_unique<Frame>();
  frame->name = fn.name();
  frame->aten = frame->name.rfind("aten::", 0) == 0;
  frame->cell = is_cell_scope(frame->name);
  if (frame->cell) ++t_cell_depth;
  frame->in_cell = t_cell_depth > 0;
  if (frame->aten) frame->outermost = t_aten_depth++ == 0;
  return frame;
}

void on_end(const at::RecordFunction&, at::ObserverContext* context) {
  const auto* frame = static_cast<Frame*>(context);
  if (frame->aten) --t_aten_depth;
  if (frame->cell) --t_cell_depth;
  if (!g_tally || !frame->aten) return;
  std::lock_guard<std::mutex> lock(g_tally->mutex);
  ++g_tally->dispatched;
  if (frame->outermost) {
    ++g_tally->outermost[frame->name];
    if (frame->in_cell) ++g_tally->outermost_in_cell[frame->name];
  }
}

struct PhaseCount {
  int64_t dispatched = 0, kernels = 0, cell_kernels = 0;
  std::map<std::string, int64_t> by_name;
};

// Runs `work` with the callbacks installed and returns what it dispatched.
template <class Work>
PhaseCount counted(Work&& work) {
  Tally tally;
  g_tally = &tally;
  at::CallbackHandle handle =
      at::addGlobalCallback(at::RecordFunctionCallback(on_start, on_end)
                                .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION,
                                         at::RecordScope::USER_SCOPE}));
  work();
  at::removeCallback(handle);
  g_tally = nullptr;
  PhaseCount c;
  c.dispatched = tally.dispatched;
  for (const auto& [name, n] : tally.outermost) {
    if (!computes(name)) continue;
    c.kernels += n;
    c.by_name[name] += n;
  }
  for (const auto& [name, n] : tally.outermost_in_cell)
    if (computes(name)) c.cell_kernels += n;
  return c;
}

// The forward with its loss, and the backward, of one step over `batch` captions of `words` words.
std::pair<PhaseCount, PhaseCount> count_one_step(Decoder& decoder, int64_t batch, int64_t words) {
  const auto& o = decoder->options();
  at::manual_seed(3);
  at::Tensor features = at::rand({batch, o.regions, o.feature_dim});
  const int64_t T = words + 2;  // <start> w_1 .. w_words <end>
  at::Tensor captions = at::randint(4, o.vocab_size, {batch, T}, at::kLong);
  captions.select(1, 0).fill_(1);
  captions.select(1, T - 1).fill_(2);
  at::Tensor lengths = at::full({batch}, T, at::kLong);
  for (auto& p : decoder->parameters()) p.mutable_grad() = at::Tensor();
  LossTerms terms;
  PhaseCount forward = counted([&] { terms = training_loss(decoder, features, captions, lengths, Precision::fp32, c10::Device(c10::kCPU)); });
  PhaseCount backward = counted([&] { terms.total.backward(); });
  return {forward, backward};
}

}  // namespace

StepOpCount count_step_ops(const DecoderOptions& model, int64_t batch, int64_t words, int64_t extra) {
  GenericOpsScope generic;  // what CUDA runs
  Decoder decoder(model);
  decoder->train();
  count_one_step(decoder, batch, words);  // warm up: first-call dispatch work is not per step
  auto [f0, b0] = count_one_step(decoder, batch, words);
  auto [f1, b1] = count_one_step(decoder, batch, words + extra);
  const double k = static_cast<double>(extra);
  StepOpCount r;
  r.dispatched = (f1.dispatched + b1.dispatched - f0.dispatched - b0.dispatched) / k;
  r.forward_kernels = (f1.kernels - f0.kernels) / k;
  r.backward_kernels = (b1.kernels - b0.kernels) / k;
  r.kernels = r.forward_kernels + r.backward_kernels;
  r.cell_kernels = (f1.cell_kernels + b1.cell_kernels - f0.cell_kernels - b0.cell_kernels) / k;
  r.cuda_kernels = r.kernels - r.cell_kernels + kCudaCellKernels;
  std::map<std::string, double> per;
  for (const auto* c : {&f1, &b1})
    for (const auto& [name, n] : c->by_name) per[name] += static_cast<double>(n) / k;
  for (const auto* c : {&f0, &b0})
    for (const auto& [name, n] : c->by_name) per[name] -= static_cast<double>(n) / k;
  for (const auto& [name, n] : per)
    if (n != 0) r.by_name.emplace_back(name, n);
  std::sort(r.by_name.begin(), r.by_name.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return r;
}

namespace bench {

void bench_ops(const BenchRun& run, json& report) {
  json section;
  for (AttentionKind kind : {AttentionKind::soft, AttentionKind::hard}) {
    if (!runs_attention(run.options.attention, kind)) continue;
    const std::string att = enum_name(kind), sfx = kind == AttentionKind::hard ? "_hard" : "";
    DecoderOptions shape = run.plan.shape;  // the count does not depend on the sizes
    shape.attention = kind;
    const auto start = Clock::now();
    const StepOpCount c = count_step_ops(shape, 4);
    const double before = kind == AttentionKind::hard ? kOpsPerStepBeforeHard : kOpsPerStepBefore;
    json by_name = json::object();
    for (const auto& [name, n] : c.by_name) by_name[name] = n;
    section[att] = {{"kernels", c.kernels},
                    {"forward", c.forward_kernels},
                    {"backward", c.backward_kernels},
                    {"cell", c.cell_kernels},
                    {"cuda", c.cuda_kernels},
                    {"dispatched", c.dispatched},
                    {"before", before},
                    {"by_name", by_name}};
    report["ops_per_step" + sfx] = c.kernels;
    report["ops_per_step_cuda" + sfx] = c.cuda_kernels;
    report["ops_cut" + sfx] = c.cuda_kernels / before;
    run.log("ops per decoder step, ", att, ": ", c.kernels, " generic (", c.forward_kernels, " forward, ",
            c.backward_kernels, " backward; the cell ", c.cell_kernels, "), ", c.cuda_kernels, " on CUDA, ",
            before, " before (", seconds_since(start), " s)");
  }
  report["ops"] = section;
}

}  // namespace bench
}  // namespace satcap
