#include "satcap/model/keras_graph.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::GradMode (LibTorch 2.x no longer brings it with ATen.h)

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "satcap/model/tfjs_model.h"
#include "satcap/runtime/error.h"

namespace satcap {
namespace {

enum class Kind {
  input, zero_padding, conv, depthwise_conv, batch_norm, relu, activation, add, multiply, concatenate,
  max_pool, avg_pool, global_avg_pool, global_max_pool, flatten, dropout, dense
};

const std::map<std::string, Kind>& kinds() {
  static const std::map<std::string, Kind> k{
      {"InputLayer", Kind::input}, {"ZeroPadding2D", Kind::zero_padding}, {"Conv2D", Kind::conv},
      {"DepthwiseConv2D", Kind::depthwise_conv}, {"BatchNormalization", Kind::batch_norm}, {"ReLU", Kind::relu},
      {"Activation", Kind::activation}, {"Add", Kind::add}, {"Multiply", Kind::multiply},
      {"Concatenate", Kind::concatenate}, {"MaxPooling2D", Kind::max_pool}, {"AveragePooling2D", Kind::avg_pool},
      {"GlobalAveragePooling2D", Kind::global_avg_pool}, {"GlobalMaxPooling2D", Kind::global_max_pool},
      {"Flatten", Kind::flatten}, {"Dropout", Kind::dropout}, {"Dense", Kind::dense}};
  return k;
}

struct Layer {
  std::string name;
  Kind kind = Kind::input;
  std::vector<int> inputs;  // indices of inbound layers
  // Spatial settings (Conv, pooling): kernel, strides, dilation as [h, w]; padding "same"/"valid".
  std::vector<std::int64_t> kernel{1, 1}, strides{1, 1}, dilation{1, 1};
  bool same = false;
  std::vector<std::int64_t> pads;  // ZeroPadding2D: {left, right, top, bottom}
  std::string activation = "linear";
  double epsilon = 1e-3;
  std::optional<double> max_value;  // ReLU
  double negative_slope = 0, threshold = 0;
  std::int64_t axis = -1;  // Concatenate, NHWC axis
  std::int64_t groups = 1;
  bool folded_away = false;  // a BatchNormalization folded into its convolution: identity
  bool folded_into = false;  // a convolution that now includes the next BatchNormalization
  // Converted parameters: weight (OIHW or [out, in]), bias, gamma, beta, mean, var.
  std::map<std::string, at::Tensor> params;
};

std::vector<std::int64_t> pair_of(const nlohmann::json& v) {
  if (v.is_number()) return {v.get<std::int64_t>(), v.get<std::int64_t>()};
  auto p = v.get<std::vector<std::int64_t>>();
  if (p.size() == 1) return {p[0], p[0]};
  return p;
}

// TensorFlow 'same' padding for one dimension: output ceil(in / stride); the odd pixel goes last.
std::pair<std::int64_t, std::int64_t> same_pad(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t d) {
  const std::int64_t eff = (k - 1) * d + 1;
  const std::int64_t out = (in + s - 1) / s;
  const std::int64_t total = std::max<std::int64_t>((out - 1) * s + eff - in, 0);
  return {total / 2, total - total / 2};
}

// {left, right, top, bottom} for at::constant_pad_nd on [B, C, H, W].
std::vector<std::int64_t> same_pads(const at::Tensor& x, const Layer& l) {
  auto [top, bottom] = same_pad(x.size(2), l.kernel[0], l.strides[0], l.dilation[0]);
  auto [left, right] = same_pad(x.size(3), l.kernel[1], l.strides[1], l.dilation[1]);
  return {left, right, top, bottom};
}

bool any_pad(const std::vector<std::int64_t>& p) {
  return std::any_of(p.begin(), p.end(), [](std::int64_t v) { return v != 0; });
}

// owned: x is a value no one else reads (a layer's fresh output, or an input with no other
// reader), so the activation may overwrite it: one pass over the map instead of reading it and
// writing a second one. Not when autograd needs it (fine-tuning): clamp's backward reads its input.
bool may_overwrite(const at::Tensor& x, bool owned) { return owned && !(x.requires_grad() && at::GradMode::is_enabled()); }

at::Tensor apply_activation(at::Tensor x, const std::string& a, const std::string& layer, bool owned) {
  const bool in_place = may_overwrite(x, owned);
  if (a == "linear") return x;
  if (a == "relu") return in_place ? x.relu_() : at::relu(x);
  if (a == "relu6") return in_place ? x.clamp_(0, 6) : at::clamp(x, 0, 6);
  if (a == "sigmoid") return in_place ? x.sigmoid_() : at::sigmoid(x);
  if (a == "tanh") return in_place ? x.tanh_() : at::tanh(x);
  if (a == "softmax") return at::softmax(x, x.dim() == 4 ? 1 : -1);
  throw ModelError("layer '" + layer + "': unsupported activation '" + a + "'");
}

}  // namespace

struct KerasGraph::Impl {
  std::vector<Layer> layers;
  std::map<std::string, int> index;
  std::vector<int> outputs;
  std::vector<std::int64_t> input_shape{-1, -1, -1};
  c10::Device device{c10::kCPU};

  // owned: in[0] has no other reader and may be overwritten (see apply_activation).
  at::Tensor forward(const Layer& l, const std::vector<at::Tensor>& in, bool owned) const;
};

namespace {

at::Tensor take(const TfjsModel& m, const std::string& layer, const std::string& what,
                const std::vector<std::int64_t>& expected_rank_shape = {}) {
  const std::string name = layer + "/" + what;
  auto it = m.weights.find(name);
  if (it == m.weights.end()) {
    throw ModelError((m.dir / "model.json").string() + ": weight '" + name + "' missing for layer '" + layer + "'");
  }
  if (!expected_rank_shape.empty() && it->second.dim() != static_cast<std::int64_t>(expected_rank_shape.size())) {
    throw ModelError((m.dir / "model.json").string() + ": weight '" + name + "' has rank " +
                     std::to_string(it->second.dim()) + ", expected " + std::to_string(expected_rank_shape.size()));
  }
  return it->second;
}

void check_size(const TfjsModel& m, const std::string& layer, const at::Tensor& t, std::int64_t n, const char* what) {
  if (t.dim() != 1 || t.size(0) != n) {
    throw ModelError((m.dir / "model.json").string() + ": weight '" + layer + "/" + what + "' has " +
                     std::to_string(t.numel()) + " values, expected " + std::to_string(n));
  }
}

}  // namespace

KerasGraph::KerasGraph(const TfjsModel& model) : impl_(std::make_unique<Impl>()) {
  const std::string where = (model.dir / "model.json").string();
  try {
    const auto& mc = model.model_config;
    const std::string cls = mc.at("class_name").get<std::string>();
    if (cls != "Model" && cls != "Functional") {
      throw ModelError(where + ": model class '" + cls + "' is not supported (a Keras functional model is needed)");
    }
    const auto& cfg = mc.at("config");
    for (const auto& jl : cfg.at("layers")) {
      Layer l;
      l.name = jl.at("name").get<std::string>();
      const std::string cls_name = jl.at("class_name").get<std::string>();
      auto k = kinds().find(cls_name);
      if (k == kinds().end()) throw ModelError(where + ": layer '" + l.name + "' has unsupported type " + cls_name);
      l.kind = k->second;
      const auto& c = jl.at("config");
      const auto& nodes = jl.at("inbound_nodes");
      if (nodes.size() > 1) throw ModelError(where + ": layer '" + l.name + "' is shared (called more than once); not supported");
      if (!nodes.empty()) {
        for (const auto& ref : nodes[0]) {
          const std::string src = ref.at(0).get<std::string>();
          auto it = impl_->index.find(src);
          if (it == impl_->index.end()) throw ModelError(where + ": layer '" + l.name + "' reads unknown layer '" + src + "'");
          if (ref.at(2).get<int>() != 0) throw ModelError(where + ": layer '" + l.name + "' reads output " + ref.at(2).dump() + " of '" + src + "'");
          l.inputs.push_back(it->second);
        }
      }
      if (c.contains("data_format") && c["data_format"].is_string() && c["data_format"] != "channels_last") {
        throw ModelError(where + ": layer '" + l.name + "' uses data_format " + c["data_format"].dump());
      }
      auto activation = [&] { if (c.contains("activation")) l.activation = c["activation"].get<std::string>(); };
      switch (l.kind) {
        case Kind::input: {
          auto shape = c.at("batch_input_shape");
          for (int i = 0; i < 3 && i + 1 < static_cast<int>(shape.size()); ++i) {
            impl_->input_shape[i] = shape[i + 1].is_null() ? -1 : shape[i + 1].get<std::int64_t>();
          }
          break;
        }
        case Kind::zero_padding: {
          const auto& p = c.at("padding");
          std::int64_t top, bottom, left, right;
          if (p.is_number()) {
            top = bottom = left = right = p.get<std::int64_t>();
          } else if (p.at(0).is_number()) {
            top = bottom = p[0].get<std::int64_t>();
            left = right = p[1].get<std::int64_t>();
          } else {
            top = p[0][0]; bottom = p[0][1]; left = p[1][0]; right = p[1][1];
          }
          l.pads = {left, right, top, bottom};
          break;
        }
        case Kind::conv:
        case Kind::depthwise_conv: {
          l.kernel = pair_of(c.at("kernel_size"));
          l.strides = pair_of(c.at("strides"));
          l.dilation = pair_of(c.at("dilation_rate"));
          l.same = c.at("padding").get<std::string>() == "same";
          activation();
          if (l.kind == Kind::conv) {
            at::Tensor kernel = take(model, l.name, "kernel", {0, 0, 0, 0});  // [kh, kw, in, out]
            if (kernel.size(0) != l.kernel[0] || kernel.size(1) != l.kernel[1]) {
              throw ModelError(where + ": weight '" + l.name + "/kernel' does not match kernel_size");
            }
            l.params["weight"] = kernel.permute({3, 2, 0, 1}).contiguous();  // [out, in, kh, kw]
          } else {
            at::Tensor kernel = take(model, l.name, "depthwise_kernel", {0, 0, 0, 0});  // [kh, kw, in, mult]
            const auto in = kernel.size(2), mult = kernel.size(3);
            // TF's output channel c * mult + m -> group c, filter m.
            l.params["weight"] = kernel.permute({2, 3, 0, 1}).reshape({in * mult, 1, kernel.size(0), kernel.size(1)}).contiguous();
            l.groups = in;
          }
          if (c.value("use_bias", true)) {
            l.params["bias"] = take(model, l.name, "bias");
            check_size(model, l.name, l.params["bias"], l.params["weight"].size(0), "bias");
          }
          break;
        }
        case Kind::batch_norm: {
          l.epsilon = c.at("epsilon").get<double>();
          auto axis = c.at("axis");
          const std::int64_t ax = axis.is_array() ? axis.at(0).get<std::int64_t>() : axis.get<std::int64_t>();
          if (ax != -1 && ax != 3) throw ModelError(where + ": layer '" + l.name + "' normalizes axis " + std::to_string(ax) + " (only channels supported)");
          l.params["mean"] = take(model, l.name, "moving_mean");
          l.params["var"] = take(model, l.name, "moving_variance");
          const auto n = l.params["mean"].size(0);
          check_size(model, l.name, l.params["var"], n, "moving_variance");
          if (c.value("scale", true)) { l.params["gamma"] = take(model, l.name, "gamma"); check_size(model, l.name, l.params["gamma"], n, "gamma"); }
          if (c.value("center", true)) { l.params["beta"] = take(model, l.name, "beta"); check_size(model, l.name, l.params["beta"], n, "beta"); }
          break;
        }
        case Kind::relu:
          if (c.contains("max_value") && !c["max_value"].is_null()) l.max_value = c["max_value"].get<double>();
          l.negative_slope = c.value("negative_slope", 0.0);
          l.threshold = c.value("threshold", 0.0);
          break;
        case Kind::activation:
          activation();
          apply_activation(at::zeros({1, 1}), l.activation, l.name, true);  // rejects unknown ones now
          break;
        case Kind::concatenate:
          l.axis = c.value("axis", -1);
          break;
        case Kind::max_pool:
        case Kind::avg_pool:
          l.kernel = pair_of(c.at("pool_size"));
          l.strides = c.contains("strides") && !c["strides"].is_null() ? pair_of(c["strides"]) : l.kernel;
          l.same = c.at("padding").get<std::string>() == "same";
          break;
        case Kind::dense: {
          activation();
          apply_activation(at::zeros({1, 1}), l.activation, l.name, true);
          at::Tensor kernel = take(model, l.name, "kernel", {0, 0});  // [in, out]
          l.params["weight"] = kernel.t().contiguous();               // [out, in]
          if (c.value("use_bias", true)) {
            l.params["bias"] = take(model, l.name, "bias");
            check_size(model, l.name, l.params["bias"], kernel.size(1), "bias");
          }
          break;
        }
        default:
          break;
      }
      if (l.kind == Kind::conv || l.kind == Kind::depthwise_conv) apply_activation(at::zeros({1, 1}), l.activation, l.name, true);
      impl_->index[l.name] = static_cast<int>(impl_->layers.size());
      impl_->layers.push_back(std::move(l));
    }
    for (const auto& o : cfg.at("output_layers")) {
      auto it = impl_->index.find(o.at(0).get<std::string>());
      if (it == impl_->index.end()) throw ModelError(where + ": unknown output layer " + o.at(0).dump());
      impl_->outputs.push_back(it->second);
    }
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(where + ": malformed Keras model config (" + e.what() + ")");
  }
}

KerasGraph::~KerasGraph() = default;
KerasGraph::KerasGraph(KerasGraph&&) noexcept = default;
KerasGraph& KerasGraph::operator=(KerasGraph&&) noexcept = default;

at::Tensor KerasGraph::Impl::forward(const Layer& l, const std::vector<at::Tensor>& in, bool owned) const {
  auto param = [&](const char* name) -> at::Tensor {
    auto it = l.params.find(name);
    return it == l.params.end() ? at::Tensor() : it->second;
  };
  const at::Tensor& x = in.empty() ? at::Tensor() : in[0];
  switch (l.kind) {
    case Kind::input:
    case Kind::dropout:
      return x;
    case Kind::zero_padding:
      return at::constant_pad_nd(x, l.pads, 0);
    case Kind::conv:
    case Kind::depthwise_conv: {
      at::Tensor y = x;
      std::vector<std::int64_t> padding{0, 0};  // symmetric, inside the convolution (no padded copy)
      if (l.same) {
        auto pads = same_pads(x, l);
        if (pads[0] == pads[1] && pads[2] == pads[3]) {
          padding = {pads[2], pads[0]};
        } else {
          y = at::constant_pad_nd(x, pads, 0);  // TF's odd padding puts the extra row and column last
        }
      }
      y = at::conv2d(y, param("weight"), param("bias"), l.strides, padding, l.dilation, l.groups);
      return apply_activation(y, l.activation, l.name, true);
    }
    case Kind::batch_norm: {
      if (l.folded_away) return x;
      // y = (x - mean) / sqrt(var + eps) * gamma + beta, with the moving statistics (inference).
      return at::batch_norm(x, param("gamma"), param("beta"), param("mean"), param("var"), false, 0.0, l.epsilon, false);
    }
    case Kind::relu: {
      const bool in_place = may_overwrite(x, owned);
      if (l.negative_slope == 0 && l.threshold == 0) {  // ReLU, or ReLU6 and the like: one pass
        if (l.max_value) return in_place ? at::Tensor(x).clamp_(0, *l.max_value) : at::clamp(x, 0, *l.max_value);
        return in_place ? at::Tensor(x).relu_() : at::relu(x);
      }
      at::Tensor y = at::where(x >= l.threshold, x, (x - l.threshold) * l.negative_slope);
      if (l.max_value) y.clamp_max_(*l.max_value);
      return y;
    }
    case Kind::activation:
      return apply_activation(x, l.activation, l.name, owned);
    case Kind::add: {
      at::Tensor y = in[0];
      for (std::size_t i = 1; i < in.size(); ++i) y = y + in[i];
      return y;
    }
    case Kind::multiply: {
      at::Tensor y = in[0];
      for (std::size_t i = 1; i < in.size(); ++i) y = y * in[i];
      return y;
    }
    case Kind::concatenate: {
      const std::int64_t rank = x.dim();
      std::int64_t ax = l.axis < 0 ? l.axis + rank : l.axis;
      if (rank == 4) ax = ax == 3 ? 1 : (ax == 0 ? 0 : ax + 1);  // NHWC axis -> NCHW axis
      return at::cat(in, ax);
    }
    case Kind::max_pool: {
      at::Tensor y = x;
      if (l.same) {
        auto pads = same_pads(x, l);
        if (any_pad(pads)) y = at::constant_pad_nd(x, pads, -std::numeric_limits<double>::infinity());
      }
      return at::max_pool2d(y, l.kernel, l.strides);
    }
    case Kind::avg_pool: {
      if (!l.same) return at::avg_pool2d(x, l.kernel, l.strides);
      auto pads = same_pads(x, l);
      if (!any_pad(pads)) return at::avg_pool2d(x, l.kernel, l.strides);
      if (pads[0] == pads[1] && pads[2] == pads[3] && pads[0] * 2 <= l.kernel[1] && pads[2] * 2 <= l.kernel[0]) {
        // Symmetric: TF averages over the valid pixels only, which is count_include_pad=false.
        return at::avg_pool2d(x, l.kernel, l.strides, {pads[2], pads[0]}, false, false);
      }
      at::Tensor sum = at::avg_pool2d(at::constant_pad_nd(x, pads, 0), l.kernel, l.strides, {0, 0}, false, true);
      at::Tensor ones = at::ones({1, 1, x.size(2), x.size(3)}, x.options());
      at::Tensor count = at::avg_pool2d(at::constant_pad_nd(ones, pads, 0), l.kernel, l.strides, {0, 0}, false, true);
      return sum / count;
    }
    case Kind::global_avg_pool:
      return x.mean({2, 3});
    case Kind::global_max_pool:
      return x.amax({2, 3});
    case Kind::flatten:
      // Keras flattens NHWC: channels vary fastest.
      return x.dim() == 4 ? x.permute({0, 2, 3, 1}).reshape({x.size(0), -1}) : x.reshape({x.size(0), -1});
    case Kind::dense:
      return apply_activation(at::linear(x, param("weight"), param("bias")), l.activation, l.name, true);
  }
  throw ModelError("layer '" + l.name + "': unsupported");
}

std::vector<at::Tensor> KerasGraph::run(const at::Tensor& input, const std::vector<std::string>& outputs) const {
  const auto& layers = impl_->layers;
  std::vector<int> wanted;
  for (const auto& name : outputs) {
    auto it = impl_->index.find(name);
    if (it == impl_->index.end()) throw ModelError("no layer named '" + name + "' in the model");
    if (layers[it->second].folded_into) throw ModelError("layer '" + name + "' was folded with its BatchNormalization; its own output is not available");
    wanted.push_back(it->second);
  }
  // Which layers are needed, and how many needed layers read each one (to free maps early).
  std::vector<char> needed(layers.size(), 0);
  std::vector<int> stack(wanted.begin(), wanted.end());
  while (!stack.empty()) {
    int i = stack.back();
    stack.pop_back();
    if (needed[i]) continue;
    needed[i] = 1;
    for (int j : layers[i].inputs) stack.push_back(j);
  }
  std::vector<int> readers(layers.size(), 0);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (needed[i]) for (int j : layers[i].inputs) readers[j]++;
  }
  for (int w : wanted) readers[w]++;  // keep the outputs
  std::vector<at::Tensor> values(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (!needed[i]) continue;
    const Layer& l = layers[i];
    if (l.kind == Kind::input) {
      values[i] = input;
      continue;
    }
    std::vector<at::Tensor> in;
    for (int j : l.inputs) in.push_back(values[j]);
    // The first input is this layer's to overwrite when this layer is its last reader and no other
    // tensor shares its memory (not the caller's input, which pass-through layers hand on as is,
    // not a kept output, not a view).
    bool owned = false;
    if (!l.inputs.empty() && readers[l.inputs.front()] == 1 &&
        std::count(l.inputs.begin(), l.inputs.end(), l.inputs.front()) == 1) {
      values[l.inputs.front()] = at::Tensor();
      owned = in[0].defined() && in[0].use_count() == 1 && in[0].storage().use_count() == 1;
    }
    values[i] = impl_->forward(l, in, owned);
    for (int j : l.inputs) {
      if (--readers[j] == 0) values[j] = at::Tensor();
    }
  }
  std::vector<at::Tensor> result;
  for (int w : wanted) result.push_back(values[w]);
  return result;
}

bool KerasGraph::has_layer(const std::string& name) const { return impl_->index.count(name) > 0; }

std::vector<std::string> KerasGraph::layer_names() const {
  std::vector<std::string> names;
  for (const auto& l : impl_->layers) names.push_back(l.name);
  return names;
}

std::vector<std::string> KerasGraph::ancestors(const std::string& layer) const {
  auto it = impl_->index.find(layer);
  if (it == impl_->index.end()) throw ModelError("no layer named '" + layer + "' in the model");
  std::set<int> seen;
  std::vector<int> stack{it->second};
  while (!stack.empty()) {
    int i = stack.back();
    stack.pop_back();
    if (!seen.insert(i).second) continue;
    for (int j : impl_->layers[i].inputs) stack.push_back(j);
  }
  std::vector<std::string> names;
  for (int i : seen) names.push_back(impl_->layers[i].name);  // std::set is sorted by index
  return names;
}

std::vector<std::string> KerasGraph::output_layers() const {
  std::vector<std::string> names;
  for (int i : impl_->outputs) names.push_back(impl_->layers[i].name);
  return names;
}

std::vector<std::int64_t> KerasGraph::input_shape() const { return impl_->input_shape; }

std::vector<at::Tensor> KerasGraph::parameters(const std::string& layer) const {
  auto it = impl_->index.find(layer);
  if (it == impl_->index.end()) throw ModelError("no layer named '" + layer + "' in the model");
  std::vector<at::Tensor> out;
  for (const auto& [name, t] : impl_->layers[it->second].params) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> KerasGraph::named_parameters(const std::string& layer) const {
  auto it = impl_->index.find(layer);
  if (it == impl_->index.end()) throw ModelError("no layer named '" + layer + "' in the model");
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [name, t] : impl_->layers[it->second].params) out.emplace_back(name, t);
  return out;
}

void KerasGraph::set_requires_grad(const std::string& layer, bool on) {
  auto it = impl_->index.find(layer);
  if (it == impl_->index.end()) throw ModelError("no layer named '" + layer + "' in the model");
  for (auto& [name, t] : impl_->layers[it->second].params) {
    // BatchNormalization's moving statistics are buffers, never trained.
    const bool trainable = on && name != "mean" && name != "var";
    t = t.detach().set_requires_grad(trainable);
  }
}

int KerasGraph::fold_batch_norms() {
  auto& layers = impl_->layers;
  std::vector<int> readers(layers.size(), 0);
  for (const auto& l : layers) for (int j : l.inputs) readers[j]++;
  for (int o : impl_->outputs) readers[o]++;
  auto frozen = [](const Layer& l) {
    return std::none_of(l.params.begin(), l.params.end(), [](const auto& p) { return p.second.requires_grad(); });
  };
  int folded = 0;
  for (auto& bn : layers) {
    if (bn.kind != Kind::batch_norm || bn.folded_away || bn.inputs.size() != 1) continue;
    Layer& conv = layers[bn.inputs[0]];
    if ((conv.kind != Kind::conv && conv.kind != Kind::depthwise_conv) || conv.activation != "linear" ||
        readers[bn.inputs[0]] != 1 || conv.folded_into || !frozen(conv) || !frozen(bn)) {
      continue;
    }
    at::Tensor w = conv.params["weight"];
    const auto out = w.size(0);
    auto opts = w.options().dtype(at::kDouble);
    at::Tensor mean = bn.params["mean"].to(at::kDouble), var = bn.params["var"].to(at::kDouble);
    at::Tensor gamma = bn.params.count("gamma") ? bn.params["gamma"].to(at::kDouble) : at::ones({out}, opts);
    at::Tensor beta = bn.params.count("beta") ? bn.params["beta"].to(at::kDouble) : at::zeros({out}, opts);
    at::Tensor bias = conv.params.count("bias") ? conv.params["bias"].to(at::kDouble) : at::zeros({out}, opts);
    if (mean.size(0) != out) continue;
    at::Tensor s = gamma / at::sqrt(var + bn.epsilon);  // [out]
    conv.params["weight"] = (w.to(at::kDouble) * s.view({out, 1, 1, 1})).to(w.scalar_type()).contiguous();
    conv.params["bias"] = ((bias - mean) * s + beta).to(w.scalar_type());
    conv.folded_into = true;
    bn.folded_away = true;
    bn.params.clear();
    ++folded;
  }
  return folded;
}

void KerasGraph::to(c10::Device device) {
  for (auto& l : impl_->layers) {
    for (auto& [name, t] : l.params) {
      const bool rg = t.requires_grad();
      t = t.detach().to(device).set_requires_grad(rg);
    }
  }
  impl_->device = device;
}

c10::Device KerasGraph::device() const { return impl_->device; }

}  // namespace satcap
