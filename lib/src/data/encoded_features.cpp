#include "satcap/data/encoded_features.h"

#include <ATen/ATen.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cstring>

#include "satcap/model/named_tensors.h"
#include "satcap/runtime/atomic_file.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "satcap/runtime/json_value.h"
#include "satcap/runtime/torch_error.h"

namespace fs = std::filesystem;

namespace satcap {
namespace {

at::Tensor text_tensor(const std::string& s) {
  at::Tensor t = at::empty({static_cast<std::int64_t>(s.size())}, at::kByte);
  if (!s.empty()) std::memcpy(t.data_ptr<std::uint8_t>(), s.data(), s.size());
  return t;
}

std::string tensor_text(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU).to(at::kByte).contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<std::uint8_t>()), static_cast<std::size_t>(c.numel()));
}

}  // namespace

void check_encoded_features_path(const fs::path& path) {
  refuse_overwriting_input(path, "--out");
  AtomicFile probe(path, ParentDirs::must_exist);  // created and, uncommitted, removed again
}

void save_encoded_features(const fs::path& path, const EncodedFeatures& data) {
  const at::Tensor& f = data.features;
  if (!f.defined() || f.dim() != 3 || f.size(0) != static_cast<std::int64_t>(data.images.size())) {
    throw std::invalid_argument("save_encoded_features: features must be [N, n, D] with one image path per row");
  }
  nlohmann::json meta{{"format", "satcap-encoded-features"},
                      {"format_version", kEncodedFeaturesVersion},
                      {"images", data.images},
                      {"encoder", data.encoder}};
  torch::serialize::OutputArchive archive;
  archive.write("format_version", at::tensor(std::vector<std::int64_t>{kEncodedFeaturesVersion}));
  archive.write("meta", text_tensor(meta.dump()));
  archive.write("features", f.detach().to(at::kCPU).to(at::kFloat).contiguous());
  // Streamed through the atomic writer: a full disk is an OutputError naming the file, never
  // LibTorch's writer throwing from its destructor (which ended the process).
  write_archive_atomic(path, archive, ParentDirs::must_exist);
}

EncodedFeatures load_encoded_features(const fs::path& path) {
  if (!fs::is_regular_file(path)) throw InputError(path.string() + ": no such features file");
  EncodedFeatures out;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string());
    at::Tensor version, meta_bytes;
    archive.read("format_version", version);
    const auto v = version.item<std::int64_t>();
    if (v > kEncodedFeaturesVersion) {
      throw InputError(path.string() + ": format_version " + std::to_string(v) + " is newer than this satcap (" +
                       std::to_string(kEncodedFeaturesVersion) + "); update satcap or re-run satcap encode");
    }
    archive.read("meta", meta_bytes);
    archive.read("features", out.features);
    auto meta = nlohmann::json::parse(tensor_text(meta_bytes));
    out.images = json_field<std::vector<std::string>>(meta, "images", path.string(), ExitCode::input);
    out.encoder = meta.value("encoder", nlohmann::json::object());
  } catch (const c10::Error& e) {
    throw InputError(path.string() + ": not a satcap features file (" + exception_text(e) + ")");
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path.string() + ": malformed metadata (" + e.what() + ")");
  }
  if (out.features.dim() != 3 || out.features.size(0) != static_cast<std::int64_t>(out.images.size())) {
    throw InputError(path.string() + ": features and image list disagree");
  }
  return out;
}

}  // namespace satcap
