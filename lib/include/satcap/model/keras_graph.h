// A Keras functional model (as TensorFlow.js stores it) executed with ATen ops, in NCHW.
// Supports the layers of Keras' MobileNetV2 and InceptionV3 and their classifier heads:
// InputLayer, ZeroPadding2D, Conv2D, DepthwiseConv2D, BatchNormalization, ReLU, Activation, Add,
// Multiply, Concatenate, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
// GlobalMaxPooling2D, Flatten, Dropout (identity at inference), Dense.
// TensorFlow's conventions are reproduced: 'same' padding puts the extra pixel at the bottom/right,
// average pooling with 'same' padding does not count the padding, kernels are converted from
// HWIO (depthwise HWCM) to OIHW, BatchNormalization uses its configured epsilon.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace satcap {

struct TfjsModel;

class KerasGraph {
 public:
  // Builds the graph from a loaded model; throws ModelError for an unsupported layer or a
  // missing/misshapen weight (naming both).
  explicit KerasGraph(const TfjsModel& model);
  ~KerasGraph();
  KerasGraph(KerasGraph&&) noexcept;
  KerasGraph& operator=(KerasGraph&&) noexcept;

  // input [B, C, H, W] (NCHW; the model's NHWC input transposed) -> the named layers' outputs:
  // 4-D maps as [B, C, h, w], flat outputs as [B, F] (features in Keras' NHWC flatten order).
  // Only the layers these outputs depend on are computed.
  std::vector<at::Tensor> run(const at::Tensor& input, const std::vector<std::string>& outputs) const;

  bool has_layer(const std::string& name) const;
  // All layer names, in the model's (topological) order.
  std::vector<std::string> layer_names() const;
  // The layers needed to compute `layer` (itself included), in topological order.
  std::vector<std::string> ancestors(const std::string& layer) const;
  // The model's output layer names.
  std::vector<std::string> output_layers() const;
  // The input's [H, W, C] as configured (batch_input_shape), -1 where unspecified.
  std::vector<std::int64_t> input_shape() const;
  // The parameter tensors of a layer (converted layouts); empty for parameterless layers.
  std::vector<at::Tensor> parameters(const std::string& layer) const;
  // The same with their names ("weight", "bias", "gamma", "beta", "mean", "var"); the tensors
  // share storage with the graph's (copy_ into them changes the network).
  std::vector<std::pair<std::string, at::Tensor>> named_parameters(const std::string& layer) const;
  // Marks a layer's parameters as leaves that require (or not) gradients.
  void set_requires_grad(const std::string& layer, bool on);
  // Folds each BatchNormalization into the Conv2D/DepthwiseConv2D it reads when that convolution
  // is linear, read by nothing else and neither layer requires gradients:
  // W' = W * s, b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps) (computed in double).
  // Faster inference; the folded convolutions' own (pre-normalization) outputs are no longer
  // available from run(). Returns the number of folded pairs.
  int fold_batch_norms();
  // Moves every parameter to `device` (parameters keep their requires_grad).
  void to(c10::Device device);
  c10::Device device() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace satcap
