// TorchScript encoders exported by tools/export_encoder.py: FILE.pt (a module mapping
// [B, 3, H, W] to a map [B, D, h, w]) and FILE.json beside it (preprocessing, grid, dim, blocks).
#include <ATen/ATen.h>
#include <torch/script.h>


#include "model/encoder_impl.h"
#include "satcap/model/tfjs_model.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "satcap/runtime/json_value.h"
#include "satcap/runtime/torch_error.h"

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
    std::error_code ec;
    if (!fs::exists(pt, ec)) throw ModelError(pt.string() + ": no such TorchScript file");
    require_regular_file(pt, ExitCode::model);
    if (!fs::exists(json_path, ec)) {
      throw ModelError(json_path.string() + ": missing (the preprocessing of " + pt.filename().string() +
                       "); export encoders with tools/export_encoder.py");
    }
    const std::string where = json_path.string();
    constexpr ExitCode m = ExitCode::model;
    meta_ = read_json_file(json_path, m);
    {
      if (json_field_or<std::string>(meta_, "format", "", where, m) != "satcap-torchscript-encoder") {
        throw ModelError(json_path.string() + ": not a satcap encoder description (format is not satcap-torchscript-encoder)");
      }
      const int version = json_field<int>(meta_, "format_version", where, m);
      if (version > kTorchScriptEncoderVersion) {
        throw ModelError(json_path.string() + ": format_version " + std::to_string(version) + " is newer than this satcap (" +
                         std::to_string(kTorchScriptEncoderVersion) + "); update satcap or re-export with its tools/export_encoder.py");
      }
      auto size = json_field<std::vector<std::int64_t>>(meta_, "input_size", where, m);
      if (size.size() != 2 || size[0] < 1 || size[1] < 1) throw ModelError(json_path.string() + ": input_size must be [H, W]");
      pre_.height = size[0];
      pre_.width = size[1];
      auto mean = json_field<std::vector<double>>(meta_, "mean", where, m);
      auto std = json_field<std::vector<double>>(meta_, "std", where, m);
      if (mean.size() != 3 || std.size() != 3) throw ModelError(json_path.string() + ": mean and std need 3 values");
      for (int c = 0; c < 3; ++c) {
        if (!(std[c] > 0)) throw ModelError(json_path.string() + ": std values must be positive");
        pre_.mean[c] = mean[c];
        pre_.std[c] = std[c];
      }
      const std::string order = json_field<std::string>(meta_, "channel_order", where, m);
      if (order != "RGB" && order != "BGR") throw ModelError(json_path.string() + ": channel_order must be RGB or BGR");
      pre_.bgr = order == "BGR";
      dim_ = json_field<int>(meta_, "dim", where, m);
      if (dim_ < 1 || dim_ > (1 << 20)) throw ModelError(where + ": \"dim\" must be in 1..1048576 (got " + std::to_string(dim_) + ")");
      blocks_ = json_field<std::vector<std::string>>(meta_, "blocks", where, m);
      arch_ = json_field_or<std::string>(meta_, "arch", "unknown", where, m);
      weights_ = json_field_or<std::string>(meta_, "weights", "unknown", where, m);
    }
    try {
      module_ = torch::jit::load(pt.string());
    } catch (const std::exception& e) {
      throw ModelError(pt.string() + ": not a loadable TorchScript file (" + exception_text(e) + ")");
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
            {"weights", weights_},
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
  // The module's map for a batch. A module that throws, returns no tensor, or returns a map of
  // another batch size or width is a ModelError naming the file (its TorchScript traceback
  // reduced to the error it raised).
  at::Tensor run(const at::Tensor& input) {
    c10::IValue result;
    try {
      result = module_.forward({input});
    } catch (const std::exception& e) {
      if (is_out_of_memory(e)) throw;
      throw ModelError(options_.source + ": the TorchScript encoder failed on a batch of " + std::to_string(input.size(0)) +
                       " image(s): " + exception_text(e));
    }
    if (!result.isTensor())
      throw ModelError(options_.source + ": the TorchScript encoder returned a " + result.tagKind() +
                       ", expected a tensor [B, " + std::to_string(dim_) + ", h, w]");
    at::Tensor map = result.toTensor();  // [B, D, h, w]
    if (map.dim() == 4 && map.size(0) != input.size(0))
      throw ModelError(options_.source + ": the TorchScript encoder returned a map for " + std::to_string(map.size(0)) +
                       " image(s) when given " + std::to_string(input.size(0)) + "; it must keep the batch size");
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
  std::string arch_, weights_, digest_;
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
