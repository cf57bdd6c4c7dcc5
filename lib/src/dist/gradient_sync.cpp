#include "satcap/dist/gradient_sync.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <stdexcept>
#include <utility>

#include "dist/process_group.h"

namespace satcap {

namespace {

struct Slot {
  std::size_t param;   // index into the parameters
  int64_t offset;      // of its gradient in the bucket's buffer, in elements
};

// Parameters whose gradients travel together: their gradients, then one count per parameter of the
// processes that had a gradient for it.
struct Bucket {
  std::vector<Slot> slots;
  at::Tensor flat;      // [elements + slots] on the collectives' device
  int64_t elements = 0;
  std::size_t pending = 0;  // gradients still to arrive in this backward pass
  bool ready = false;
  c10::intrusive_ptr<c10d::Work> work;
};

}  // namespace

struct GradientSync::Impl {
  Communicator::Impl& comm;
  std::vector<at::Tensor> params;
  std::vector<Bucket> buckets;
  std::vector<std::pair<std::size_t, std::size_t>> where;  // parameter -> (bucket, slot)
  std::size_t next_to_launch = 0;
  bool armed = false;  // between before_backward and after_backward
  // A leaf holds its AccumulateGrad node only weakly: without these the node, and the hook on it,
  // would go with the first backward's graph.
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks;

  explicit Impl(Communicator::Impl& c) : comm(c) {}

  // The slot's part of the buffer: its gradient, or zeros and a count of 0 without one.
  void copy_in(Bucket& b, std::size_t s) {
    const at::Tensor& p = params[b.slots[s].param];
    const at::Tensor& g = p.grad();
    auto part = b.flat.narrow(0, b.slots[s].offset, p.numel());
    if (g.defined()) part.copy_(g.reshape({-1}));
    else part.zero_();
    b.flat[b.elements + static_cast<int64_t>(s)].fill_(g.defined() ? 1.0 : 0.0);
  }

  void launch(std::size_t bi) {
    std::vector<at::Tensor> one{buckets[bi].flat};  // ONE tensor: a list means one per device
    try {
      buckets[bi].work = comm.group->allreduce(one);
    } catch (const std::exception& e) {
      comm.failed("gradient allreduce", e);
    }
  }

  // From the autograd hook (on the thread running backward): the parameter's gradient is complete.
  void on_gradient(std::size_t k) {
    if (!armed) return;  // a backward pass outside a training step (tests, probes)
    const auto [bi, si] = where[k];
    Bucket& b = buckets[bi];
    copy_in(b, si);
    if (b.pending == 0) throw std::logic_error("GradientSync: a gradient arrived twice in one backward pass");
    if (--b.pending == 0) {
      b.ready = true;
      // Strictly in bucket order: every process must issue the same sequence of collectives.
      while (next_to_launch < buckets.size() && buckets[next_to_launch].ready) launch(next_to_launch++);
    }
  }
};

GradientSync::GradientSync(Communicator& comm, std::vector<at::Tensor> parameters, std::size_t bucket_bytes)
    : impl_(std::make_unique<Impl>(comm.impl())) {
  Impl& m = *impl_;
  m.params = std::move(parameters);
  m.where.resize(m.params.size());
  // Reverse registration order; a new bucket when the current one is full or the dtype changes.
  std::size_t bytes = 0;
  for (std::size_t k = m.params.size(); k-- > 0;) {
    const at::Tensor& p = m.params[k];
    if (!p.is_leaf() || !p.requires_grad()) throw std::invalid_argument("GradientSync: parameters must be leaves that require grad");
    const std::size_t nbytes = static_cast<std::size_t>(p.numel()) * p.element_size();
    if (m.buckets.empty() || bytes + nbytes > bucket_bytes ||
        m.params[m.buckets.back().slots.front().param].scalar_type() != p.scalar_type()) {
      m.buckets.emplace_back();
      bytes = 0;
    }
    Bucket& b = m.buckets.back();
    m.where[k] = {m.buckets.size() - 1, b.slots.size()};
    b.slots.push_back({k, b.elements});
    b.elements += p.numel();
    bytes += nbytes;
  }
  for (Bucket& b : m.buckets) {
    const at::Tensor& first = m.params[b.slots.front().param];
    b.flat = at::zeros({b.elements + static_cast<int64_t>(b.slots.size())},
                       first.options().device(comm.impl().device).requires_grad(false));
  }
  for (std::size_t k = 0; k < m.params.size(); ++k) {
    // The AccumulateGrad node's post-hooks run once the parameter's gradient has been accumulated
    // (the parameter's own register_hook would run before, on the incoming gradient).
    auto node = torch::autograd::impl::grad_accumulator(m.params[k]);
    Impl* impl = impl_.get();
    const uintptr_t key = node->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [impl, k](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          impl->on_gradient(k);
          return outputs;
        }));
    m.hooks.emplace_back(std::move(node), key);
  }
}

GradientSync::~GradientSync() {
  for (auto& [node, key] : impl_->hooks) node->del_post_hook(key);  // they point at this object
}

void GradientSync::before_backward() {
  Impl& m = *impl_;
  for (Bucket& b : m.buckets) {
    b.pending = b.slots.size();
    b.ready = false;
    b.work.reset();
  }
  m.next_to_launch = 0;
  m.armed = true;
}

void GradientSync::after_backward() {
  Impl& m = *impl_;
  if (!m.armed) throw std::logic_error("GradientSync: after_backward without before_backward");
  m.armed = false;
  // What never arrived (parameters the loss did not reach here) goes as zeros with a count of 0.
  for (; m.next_to_launch < m.buckets.size(); ++m.next_to_launch) {
    Bucket& b = m.buckets[m.next_to_launch];
    if (!b.ready)
      for (std::size_t s = 0; s < b.slots.size(); ++s) m.copy_in(b, s);
    m.launch(m.next_to_launch);
  }
  at::NoGradGuard no_grad;
  for (Bucket& b : m.buckets) {
    m.comm.wait(b.work, "gradient allreduce");
    b.work.reset();
    auto counts = b.flat.narrow(0, b.elements, static_cast<int64_t>(b.slots.size())).to(at::kCPU, at::kFloat);
    auto count = counts.accessor<float, 1>();
    for (std::size_t s = 0; s < b.slots.size(); ++s) {
      at::Tensor& p = m.params[b.slots[s].param];
      if (count[static_cast<int64_t>(s)] == 0) {  // no process had a gradient: none here either
        p.mutable_grad().reset();
        continue;
      }
      auto sum = b.flat.narrow(0, b.slots[s].offset, p.numel()).view(p.sizes());
      if (p.grad().defined()) p.mutable_grad().copy_(sum);
      else p.mutable_grad() = sum.to(p.device()).clone();
    }
  }
}

std::size_t GradientSync::buckets() const { return impl_->buckets.size(); }

std::size_t GradientSync::bytes_per_step() const {
  std::size_t bytes = 0;
  for (const Bucket& b : impl_->buckets) bytes += static_cast<std::size_t>(b.flat.numel()) * b.flat.element_size();
  return bytes;
}

}  // namespace satcap
