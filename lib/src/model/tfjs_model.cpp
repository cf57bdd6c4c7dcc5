#include "satcap/model/tfjs_model.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"

namespace fs = std::filesystem;

namespace satcap {
namespace {

std::vector<std::uint8_t> read_bytes(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw ModelError(path.string() + ": cannot open (run tools/import_models.sh to import the embedded encoders)");
  const std::string bytes = read_input_file(path, ExitCode::model);
  return std::vector<std::uint8_t>(bytes.begin(), bytes.end());
}

std::string fnv1a64(const std::uint8_t* data, std::size_t n) {
  std::uint64_t h = 1469598103934665603ULL;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= data[i];
    h *= 1099511628211ULL;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "fnv1a64:%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace

std::string file_digest(const fs::path& path) {
  auto bytes = read_bytes(path);
  return fnv1a64(bytes.data(), bytes.size());
}

TfjsModel load_tfjs_model(const fs::path& dir) {
  TfjsModel model;
  model.dir = dir;
  const fs::path json_path = dir / "model.json";
  std::error_code ec;
  if (!fs::exists(json_path, ec))
    throw ModelError(json_path.string() + ": missing (run tools/import_models.sh to import the embedded encoders)");
  const nlohmann::json j = read_json_file(json_path, ExitCode::model);
  try {
    const auto& topology = j.at("modelTopology");
    model.model_config = topology.contains("model_config") ? topology.at("model_config") : topology;
    std::vector<std::uint8_t> data;
    std::string digest_input;
    for (const auto& group : j.at("weightsManifest")) {
      for (const auto& p : group.at("paths")) {
        auto bytes = read_bytes(dir / p.get<std::string>());
        data.insert(data.end(), bytes.begin(), bytes.end());
      }
    }
    model.weights_digest = fnv1a64(data.data(), data.size());
    std::size_t offset = 0;
    for (const auto& group : j.at("weightsManifest")) {
      for (const auto& spec : group.at("weights")) {
        const std::string name = spec.at("name").get<std::string>();
        const std::string dtype = spec.at("dtype").get<std::string>();
        std::vector<std::int64_t> shape = spec.at("shape").get<std::vector<std::int64_t>>();
        std::int64_t count = 1;
        for (auto s : shape) count *= s;
        if (dtype != "float32") throw ModelError(json_path.string() + ": weight '" + name + "' has dtype " + dtype + " (only float32 supported)");
        at::Tensor t = at::empty(shape, at::kFloat);
        float* out = t.data_ptr<float>();
        std::string qdtype = spec.contains("quantization") ? spec["quantization"].at("dtype").get<std::string>() : "";
        const std::size_t width = qdtype.empty() ? 4 : (qdtype == "uint8" ? 1 : 2);
        const std::size_t need = static_cast<std::size_t>(count) * width;
        if (offset + need > data.size()) {
          throw ModelError((dir / "weights.bin").string() + ": too short for weight '" + name + "' (" + std::to_string(data.size()) +
                           " bytes; re-run tools/import_models.sh)");
        }
        const std::uint8_t* src = data.data() + offset;
        if (qdtype.empty()) {
          std::memcpy(out, src, need);
        } else if (qdtype == "uint8" || qdtype == "uint16") {
          // tfjs-core io_utils.decodeWeights: values[i] = v * quantization.scale + quantization.min,
          // JavaScript doubles stored into a Float32Array.
          const double scale = spec["quantization"].at("scale").get<double>();
          const double min = spec["quantization"].at("min").get<double>();
          for (std::int64_t i = 0; i < count; ++i) {
            double q = width == 1 ? src[i] : static_cast<double>(src[2 * i] | (src[2 * i + 1] << 8));
            out[i] = static_cast<float>(q * scale + min);
          }
        } else {
          throw ModelError(json_path.string() + ": weight '" + name + "' has unsupported quantization " + qdtype);
        }
        offset += need;
        model.weights[name] = t;
      }
    }
    if (offset != data.size()) {
      throw ModelError((dir / "weights.bin").string() + ": " + std::to_string(data.size() - offset) +
                       " bytes left over after the last weight; re-run tools/import_models.sh");
    }
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(json_path.string() + ": malformed tfjs model (" + e.what() + ")");
  }
  return model;
}

}  // namespace satcap
