// `satcap encode IMAGE...`: images -> region features h1..hn with the chosen encoder.
// Each image's result is printed as it is done (one JSON object per line with --json); --out
// stores all features in one versioned file (lib/include/satcap/data/encoded_features.h).
// Exit codes: 0 all encoded; 6 some images failed ("error: PATH: reason" on stderr each), the
// others printed and stored; 3 every image failed (nothing stored).
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>

#include "command.h"
#include "satcap/data/encoded_features.h"
#include "satcap/data/image.h"
#include "satcap/model/encoder.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "satcap/runtime/runtime.h"

namespace satcap::app {
namespace {

namespace fs = std::filesystem;

struct EncodeCommandOptions {
  std::vector<std::string> inputs;  // images, folders, or .txt/.lst lists
  EncoderOptions encoder;
  bool json = false;                // one JSON object per image on stdout
  std::string out;                  // features file ("" = none)
  int batch = 8;                    // images per forward pass
};

int run_encode(const EncodeCommandOptions& o) {
  if (o.batch < 1) throw UsageError("--batch must be at least 1 (got " + std::to_string(o.batch) + ")");
  const c10::Device device = parse_device(global_options().device);
  int failed = 0;
  std::vector<std::string> paths;
  ProtectedInputs inputs;  // --out must not replace an image, a list or the encoder
  for (const auto& input : o.inputs) {
    inputs.add(fs::path(input), "the input");
    try {
      for (const auto& p : expand_image_inputs({input})) {
        paths.push_back(p.string());
        inputs.add(p, "the input image");
      }
    } catch (const Error& e) {
      std::cerr << "error: " << e.what() << "\n";
      ++failed;
    }
  }
  inputs.add(fs::path(o.encoder.source), "the encoder");
  if (!o.out.empty()) check_encoded_features_path(o.out);  // before the work, not after it
  auto encoder = load_encoder(o.encoder);
  encoder->to(device);

  const std::string identity = encoder->identity();
  const ImageLimits limits = encoder->read_limits();  // as prepare reads images for this encoder
  std::vector<at::Tensor> stored;
  std::vector<std::string> stored_paths;
  int done = 0;
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t begin = 0; begin < paths.size(); begin += static_cast<std::size_t>(o.batch)) {
    const std::size_t end = std::min(paths.size(), begin + static_cast<std::size_t>(o.batch));
    std::vector<cv::Mat> images;
    std::vector<std::string> names;
    for (std::size_t i = begin; i < end; ++i) {
      try {
        images.push_back(read_image_rgb(paths[i], limits));
        names.push_back(paths[i]);
      } catch (const InputError& e) {
        std::cerr << "error: " << e.what() << "\n";
        ++failed;
      }
    }
    if (images.empty()) continue;
    at::Tensor features = encoder->encode(images).to(at::kCPU);  // [B, n, D]
    for (std::size_t k = 0; k < names.size(); ++k) {
      if (o.json) {
        nlohmann::json line{{"image", names[k]},
                            {"grid", {encoder->grid_rows(), encoder->grid_cols()}},
                            {"regions", features.size(1)},
                            {"dim", features.size(2)},
                            {"encoder", identity}};
        std::cout << line.dump() << "\n";
      } else {
        std::cout << names[k] << ": " << encoder->grid_rows() << "x" << encoder->grid_cols() << " = " << features.size(1)
                  << " regions of dimension " << features.size(2) << "\n";
      }
    }
    std::cout.flush();
    done += static_cast<int>(names.size());
    if (!o.out.empty()) {
      stored.push_back(features);
      stored_paths.insert(stored_paths.end(), names.begin(), names.end());
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!global_options().quiet && done > 0) {
    std::cerr << "encoded " << done << " image(s) in " << seconds << " s (" << 1000.0 * seconds / done
              << " ms/image, reading included) with " << identity << "\n";
  }
  if (done == 0) {
    if (failed == 0) throw InputError("no images found in the given inputs");
    std::cerr << "error: none of the " << failed << " input(s) could be encoded\n";
    return static_cast<int>(ExitCode::input);
  }
  if (!o.out.empty()) {
    save_encoded_features(o.out, {at::cat(stored, 0), stored_paths, encoder->describe()});
  }
  return failed > 0 ? static_cast<int>(ExitCode::partial) : 0;
}

const CommandRegistration registration{
    "encode", "Encode images into region features (n = grid x grid regions of dimension D)",
    [](CLI::App& sub) -> RunFunction {
      auto o = std::make_shared<EncodeCommandOptions>();
      sub.add_option("images", o->inputs, "Images, folders (searched recursively) or .txt/.lst lists")->required();
      sub.add_option("--encoder", o->encoder.source, "Embedded encoder (mobilenet_v2, inception_v3) or a TorchScript .pt file")
          ->capture_default_str();
      sub.add_option("--models-dir", o->encoder.models_dir, "Where the embedded encoders were imported (\"\" = <repository>/models)")
          ->capture_default_str();
      sub.add_option("--grid", o->encoder.grid, "Regions per side (the map is pooled adaptively to grid x grid)")
          ->capture_default_str();
      sub.add_flag("--json", o->json, "One JSON object per image on stdout");
      sub.add_option("--out", o->out, "Store the features [N, n, D] in this file (\"\" = do not store)")->capture_default_str();
      sub.add_option("--batch", o->batch, "Images per forward pass")->capture_default_str();
      return [o] { return run_encode(*o); };
    }};

}  // namespace
}  // namespace satcap::app
