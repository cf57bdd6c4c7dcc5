#include "satcap/data/encoded_features.h"

#include <ATen/ATen.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "satcap/runtime/error.h"

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
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw OutputError(path.string() + ": is a folder; give a file name");
  const fs::path tmp = path.string() + ".tmp-" + std::to_string(getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw OutputError(path.string() + ": cannot write (" + std::strerror(errno) + ")");
  ::close(fd);
  ::unlink(tmp.c_str());
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
  std::error_code dir_ec;
  if (fs::is_directory(path, dir_ec)) throw OutputError(path.string() + ": is a folder; give a file name");
  const fs::path tmp = path.string() + ".tmp-" + std::to_string(getpid());
  try {
    torch::serialize::OutputArchive archive;
    archive.write("format_version", at::tensor(std::vector<std::int64_t>{kEncodedFeaturesVersion}));
    archive.write("meta", text_tensor(meta.dump()));
    archive.write("features", f.detach().to(at::kCPU).to(at::kFloat).contiguous());
    archive.save_to(tmp.string());
  } catch (const c10::Error& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    std::string what = e.what();
    throw OutputError(path.string() + ": cannot write (" + what.substr(0, what.find('\n')) + ")");
  }
  int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string reason = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    std::error_code ec;
    fs::remove(tmp, ec);
    throw OutputError(path.string() + ": " + reason);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw OutputError(path.string() + ": cannot write (" + reason + ")");
  }
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
    out.images = meta.at("images").get<std::vector<std::string>>();
    out.encoder = meta.at("encoder");
  } catch (const c10::Error& e) {
    std::string what = e.what();
    throw InputError(path.string() + ": not a satcap features file (" + what.substr(0, what.find('\n')) + ")");
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path.string() + ": malformed metadata (" + e.what() + ")");
  }
  if (out.features.dim() != 3 || out.features.size(0) != static_cast<std::int64_t>(out.images.size())) {
    throw InputError(path.string() + ": features and image list disagree");
  }
  return out;
}

}  // namespace satcap
