// The embedded encoders: nsfwjs@4.4.0's Keras MobileNetV2 and InceptionV3 (imported by
// tools/import_models.sh), run by KerasGraph up to a feature layer; the 5-class head is dropped.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <regex>

#include "model/encoder_impl.h"
#include "satcap/build_config.h"
#include "satcap/model/keras_graph.h"
#include "satcap/model/tfjs_model.h"
#include "satcap/runtime/error.h"

namespace fs = std::filesystem;

namespace satcap::detail {
namespace {

struct EmbeddedSpec {
  const char* name;
  // The feature layer (see the choice below) and the layers that close each block, in order
  // (a block is every layer after the previous block end, up to and including its own end).
  const char* feature_layer;
  std::vector<std::string> (*blocks)(const std::vector<std::string>& ancestors);
};

// MobileNetV2 at 224x224: the maps are 112 (Conv1), 56 (block_1), 28 (block_3), 14 (block_6 ..
// block_12) and 7 (block_13's depthwise stride 2 .. out_relu). The paper's regions are a 14x14
// map before the last spatial reduction (VGG conv5_4 before pooling); the equivalent here is the
// last 14x14 map, block_13_expand_relu: 576 channels, ReLU6 activations, just before block_13's
// strided depthwise convolution. Later 14x14 candidates are narrower (block_12_add: 96 channels);
// the 7x7 maps after it give only 49 regions. A larger input would give a larger grid, but the
// network is used at the size it was trained and checked at (224), so regions = 14x14 = 196.
std::vector<std::string> mobilenet_blocks(const std::vector<std::string>& ancestors) {
  static const std::regex block(R"(^(block_\d+|expanded_conv)_.*)");
  std::vector<std::string> labels;
  for (const auto& name : ancestors) {
    std::smatch m;
    labels.push_back(std::regex_match(name, m, block) ? m[1].str() : "stem");
  }
  return labels;
}

// InceptionV3 at 299x299: 35x35 maps (mixed0..mixed2, 288 channels), 17x17 (mixed3..mixed7, 768)
// and 8x8 (mixed8..mixed10, 2048). mixed7 is the last map before the final reduction (mixed8),
// its 17x17 is the closest to the paper's 14x14 and its 768 channels are the most semantic map at
// that resolution; it is average-pooled adaptively to the grid (17 -> 14: windows of 2 or 3).
// The 8x8 mixed10 would give only 64 regions.
std::vector<std::string> inception_blocks(const std::vector<std::string>& ancestors) {
  static const std::regex mixed(R"(^mixed\d+$)");
  std::vector<std::string> labels(ancestors.size());
  // Walk backwards: each layer belongs to the next mixedN at or after it; the stem (everything
  // up to max_pooling2d_2) is one block.
  std::string current = "mixed?";
  bool in_stem = false;
  for (std::size_t k = ancestors.size(); k-- > 0;) {
    const auto& name = ancestors[k];
    if (std::regex_match(name, mixed)) current = name;
    if (name == "max_pooling2d_2") in_stem = true;
    labels[k] = in_stem ? "stem" : current;
  }
  return labels;
}

const EmbeddedSpec specs[] = {
    {"mobilenet_v2", "block_13_expand_relu", mobilenet_blocks},
    {"inception_v3", "mixed7", inception_blocks},
};

class EmbeddedEncoder final : public Encoder {
 public:
  EmbeddedEncoder(const EncoderOptions& options, const EmbeddedSpec& spec) : options_(options), spec_(spec) {
    const fs::path models = options.models_dir.empty() ? fs::path(SATCAP_DEFAULT_MODELS_DIR) : fs::path(options.models_dir);
    const fs::path dir = models / "embedded" / spec.name;
    if (!fs::exists(dir / "model.json")) {
      throw ModelError((dir / "model.json").string() + ": missing; import the embedded encoders with tools/import_models.sh "
                       "(or tools/setup.sh)");
    }
    TfjsModel model = load_tfjs_model(dir);
    digest_ = model.weights_digest;
    graph_ = std::make_unique<KerasGraph>(model);
    if (!graph_->has_layer(spec.feature_layer)) {
      throw ModelError((dir / "model.json").string() + ": feature layer '" + spec.feature_layer + "' not found");
    }
    auto shape = graph_->input_shape();  // [H, W, C]
    if (shape[0] <= 0 || shape[1] <= 0 || shape[2] != 3) {
      throw ModelError((dir / "model.json").string() + ": expected a fixed-size RGB input");
    }
    pre_.height = shape[0];
    pre_.width = shape[1];
    pre_.align_corners = true;  // nsfwjs: tf.image.resizeBilinear(x / 255, [size, size], true)

    // Blocks up to the feature layer; the last trainable_blocks of them are trainable.
    const auto layers = graph_->ancestors(spec.feature_layer);
    const auto labels = spec.blocks(layers);
    std::vector<std::string> order;
    for (const auto& l : labels) {
      if (order.empty() || order.back() != l) order.push_back(l);
    }
    if (options.trainable_blocks > static_cast<int>(order.size())) {
      throw UsageError("--trainable-blocks " + std::to_string(options.trainable_blocks) + " exceeds the " +
                       std::to_string(order.size()) + " blocks of " + spec.name + " up to " + spec.feature_layer);
    }
    blocks_ = order;
    const std::vector<std::string> trainable(order.end() - options.trainable_blocks, order.end());
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const bool on = std::find(trainable.begin(), trainable.end(), labels[i]) != trainable.end();
      graph_->set_requires_grad(layers[i], on);
      if (on) trainable_layers_.push_back(layers[i]);
    }

    // Frozen BatchNormalizations are folded into their convolutions (same features to float
    // rounding, fewer passes over memory); trainable ones stay separate so they can be tuned.
    folded_ = graph_->fold_batch_norms();

    // One pass on a blank image gives the map's size and D.
    at::NoGradGuard no_grad;
    at::Tensor map = graph_->run(at::zeros({1, 3, pre_.height, pre_.width}), {spec.feature_layer})[0];
    map_h_ = map.size(2);
    map_w_ = map.size(3);
    dim_ = static_cast<int>(map.size(1));
  }

  at::Tensor preprocess(const std::vector<cv::Mat>& rgb_images) const override {
    return preprocess_images(rgb_images, pre_, device());
  }

  at::Tensor forward(const at::Tensor& input) override {
    at::Tensor map = graph_->run(input, {spec_.feature_layer})[0];  // [B, D, h, w]
    return map_to_regions(map, options_.grid);                       // [B, n, D]
  }

  int grid_rows() const override { return options_.grid; }
  int grid_cols() const override { return options_.grid; }
  int dim() const override { return dim_; }

  std::string identity() const override {
    return std::string("nsfwjs@4.4.0/") + spec_.name + ":" + spec_.feature_layer + "@" + std::to_string(pre_.height) + "x" +
           std::to_string(pre_.width) + ":grid" + std::to_string(options_.grid) + ":" + digest_ + tuned_suffix();
  }

  nlohmann::json describe() const override {
    return {{"identity", identity()},
            {"source", "embedded"},
            {"name", spec_.name},
            {"feature_layer", spec_.feature_layer},
            {"feature_map", {map_h_, map_w_}},
            {"pooling", map_h_ == options_.grid && map_w_ == options_.grid ? "none" : "adaptive_avg"},
            {"preprocessing", pre_.describe()},
            {"grid", {options_.grid, options_.grid}},
            {"regions", regions()},
            {"dim", dim_},
            {"weights_digest", digest_},
            {"blocks", blocks_},
            {"folded_batch_norms", folded_},
            {"trainable_blocks", options_.trainable_blocks}};
  }

  c10::Device device() const override { return graph_->device(); }
  void to(c10::Device device) override { graph_->to(device); }

  std::vector<at::Tensor> trainable_parameters() override {
    std::vector<at::Tensor> out;
    for (const auto& l : trainable_layers_) {
      for (auto& t : graph_->parameters(l)) {
        if (t.requires_grad()) out.push_back(t);
      }
    }
    return out;
  }

  std::vector<std::pair<std::string, at::Tensor>> named_trainable_parameters() override {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& l : trainable_layers_) {
      for (auto& [name, t] : graph_->named_parameters(l)) {
        if (t.requires_grad()) out.emplace_back(l + "/" + name, t);
      }
    }
    return out;
  }

  void freeze() override {
    for (const auto& l : trainable_layers_) graph_->set_requires_grad(l, false);
    trainable_layers_.clear();
    folded_ += graph_->fold_batch_norms();
  }

  // BatchNormalization always uses its moving statistics (fine-tuning with small caption
  // batches would ruin them) and the trunk has no dropout: train() changes nothing here.
  void train(bool on) override { training_ = on; }

 private:
  EncoderOptions options_;
  const EmbeddedSpec& spec_;
  std::unique_ptr<KerasGraph> graph_;
  Preprocessing pre_;
  std::string digest_;
  std::vector<std::string> blocks_, trainable_layers_;
  std::int64_t map_h_ = 0, map_w_ = 0;
  int dim_ = 0;
  int folded_ = 0;
  bool training_ = false;
};

}  // namespace

std::unique_ptr<Encoder> load_embedded_encoder(const EncoderOptions& options) {
  for (const auto& spec : specs) {
    if (options.source == spec.name) return std::make_unique<EmbeddedEncoder>(options, spec);
  }
  throw UsageError("--encoder " + options.source + ": unknown embedded encoder (mobilenet_v2, inception_v3)");
}

}  // namespace satcap::detail
