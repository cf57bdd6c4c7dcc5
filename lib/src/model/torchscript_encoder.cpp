// TorchScript encoders exported by tools/export_encoder.py: FILE.pt (a module mapping
// [B, 3, H, W] to a map [B, D, h, w]) and FILE.json beside it (preprocessing, grid, dim, blocks).
#include <ATen/ATen.h>
#include <torch/script.h>

#include <fstream>

#include "model/encoder_impl.h"
#include "satcap/model/tfjs_model.h"
#include "satcap/runtime/error.h"

namespace fs = std::filesystem;

namespace satcap::detail {
namespace {

constexpr int kTorchScriptEncoderVersion = 1;

class TorchScriptEncoder final : public Encoder {
 public:
  explicit TorchScriptEncoder(const EncoderOptions& options) : options_(options) {
    const fs::path pt = options.source;
    fs::path json_path = pt;
    json_path.replace_extension(".json");
    if (!fs::is_regular_file(pt)) throw ModelError(pt.string() + ": no such TorchScript file");
    if (!fs::is_regular_file(json_path)) {
      throw ModelError(json_path.string() + ": missing (the preprocessing of " + pt.filename().string() +
                       "); export encoders with tools/export_encoder.py");
    }
    try {
      std::ifstream in(json_path);
      meta_ = nlohmann::json::parse(in);
      if (meta_.value("format", "") != "satcap-torchscript-encoder") {
        throw ModelError(json_path.string() + ": not a satcap encoder description (format is not satcap-torchscript-encoder)");
      }
      const int version = meta_.at("format_version").get<int>();
      if (version > kTorchScriptEncoderVersion) {
        throw ModelError(json_path.string() + ": format_version " + std::to_string(version) + " is newer than this satcap (" +
                         std::to_string(kTorchScriptEncoderVersion) + "); update satcap or re-export with its tools/export_encoder.py");
      }
      auto size = meta_.at("input_size").get<std::vector<std::int64_t>>();
      if (size.size() != 2 || size[0] < 1 || size[1] < 1) throw ModelError(json_path.string() + ": input_size must be [H, W]");
      pre_.height = size[0];
      pre_.width = size[1];
      auto mean = meta_.at("mean").get<std::vector<double>>();
      auto std = meta_.at("std").get<std::vector<double>>();
      if (mean.size() != 3 || std.size() != 3) throw ModelError(json_path.string() + ": mean and std need 3 values");
      for (int c = 0; c < 3; ++c) {
        if (!(std[c] > 0)) throw ModelError(json_path.string() + ": std values must be positive");
        pre_.mean[c] = mean[c];
        pre_.std[c] = std[c];
      }
      const std::string order = meta_.at("channel_order").get<std::string>();
      if (order != "RGB" && order != "BGR") throw ModelError(json_path.string() + ": channel_order must be RGB or BGR");
      pre_.bgr = order == "BGR";
      dim_ = meta_.at("dim").get<int>();
      blocks_ = meta_.at("blocks").get<std::vector<std::string>>();
      arch_ = meta_.value("arch", "unknown");
    } catch (const nlohmann::json::exception& e) {
      throw ModelError(json_path.string() + ": malformed encoder description (" + e.what() + ")");
    }
    try {
      module_ = torch::jit::load(pt.string());
    } catch (const c10::Error& e) {
      std::string what = e.what();
      throw ModelError(pt.string() + ": not a loadable TorchScript file (" + what.substr(0, what.find('\n')) + ")");
    }
    module_.eval();
    digest_ = file_digest(pt);
    if (options.trainable_blocks > static_cast<int>(blocks_.size())) {
      throw UsageError("--trainable-blocks " + std::to_string(options.trainable_blocks) + " exceeds the " +
                       std::to_string(blocks_.size()) + " blocks of " + pt.string());
    }
    const std::vector<std::string> trainable(blocks_.end() - options.trainable_blocks, blocks_.end());
    for (const auto& p : module_.named_parameters(true)) {
      bool on = false;
      for (const auto& b : trainable) on = on || p.name == b || p.name.rfind(b + ".", 0) == 0;
      p.value.set_requires_grad(on);
    }
    // Checks the module against its description on a blank image.
    at::NoGradGuard no_grad;
    at::Tensor map = run(at::zeros({1, 3, pre_.height, pre_.width}));
    map_h_ = map.size(2);
    map_w_ = map.size(3);
  }

  at::Tensor preprocess(const std::vector<cv::Mat>& rgb_images) const override {
    return preprocess_images(rgb_images, pre_, device_);
  }

  at::Tensor forward(const at::Tensor& input) override { return map_to_regions(run(input), options_.grid); }

  int grid_rows() const override { return options_.grid; }
  int grid_cols() const override { return options_.grid; }
  int dim() const override { return dim_; }

  std::string identity() const override {
    return "torchscript/" + arch_ + ":" + fs::path(options_.source).filename().string() + "@" + std::to_string(pre_.height) + "x" +
           std::to_string(pre_.width) + ":grid" + std::to_string(options_.grid) + ":" + digest_ + tuned_suffix();
  }

  nlohmann::json describe() const override {
    return {{"identity", identity()},
            {"source", "torchscript"},
            {"file", options_.source},
            {"arch", arch_},
            {"weights", meta_.value("weights", "unknown")},
            {"feature_map", {map_h_, map_w_}},
            {"pooling", map_h_ == options_.grid && map_w_ == options_.grid ? "none" : "adaptive_avg"},
            {"preprocessing", pre_.describe()},
            {"grid", {options_.grid, options_.grid}},
            {"regions", regions()},
            {"dim", dim_},
            {"weights_digest", digest_},
            {"blocks", blocks_},
            {"trainable_blocks", options_.trainable_blocks}};
  }

  c10::Device device() const override { return device_; }
  void to(c10::Device device) override {
    module_.to(device);  // moves parameters in place: requires_grad and identities are kept
    device_ = device;
  }

  std::vector<at::Tensor> trainable_parameters() override {
    std::vector<at::Tensor> out;
    for (const auto& p : module_.parameters(true)) {
      if (p.requires_grad()) out.push_back(p);
    }
    return out;
  }

  std::vector<std::pair<std::string, at::Tensor>> named_trainable_parameters() override {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& p : module_.named_parameters(true)) {
      if (p.value.requires_grad()) out.emplace_back(p.name, p.value);
    }
    return out;
  }

  // The module stays in eval mode: BatchNorm keeps its running statistics while fine-tuning.
  void train(bool on) override { training_ = on; }

 private:
  at::Tensor run(const at::Tensor& input) {
    at::Tensor map = module_.forward({input}).toTensor();  // [B, D, h, w]
    if (map.dim() != 4 || map.size(1) != dim_) {
      throw ModelError(options_.source + ": the module returns " + std::to_string(map.dim()) + "-D output " +
                       (map.dim() >= 2 ? "with " + std::to_string(map.size(1)) + " channels" : std::string()) +
                       ", expected [B, " + std::to_string(dim_) + ", h, w]");
    }
    return map;
  }

  EncoderOptions options_;
  nlohmann::json meta_;
  torch::jit::Module module_;
  Preprocessing pre_;
  std::vector<std::string> blocks_;
  std::string arch_, digest_;
  c10::Device device_{c10::kCPU};
  std::int64_t map_h_ = 0, map_w_ = 0;
  int dim_ = 0;
  bool training_ = false;
};

}  // namespace

std::unique_ptr<Encoder> load_torchscript_encoder(const EncoderOptions& options) {
  return std::make_unique<TorchScriptEncoder>(options);
}

}  // namespace satcap::detail
