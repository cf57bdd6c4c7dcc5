#include "satcap/model/bundle.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "satcap/build_config.h"
#include "satcap/model/named_tensors.h"
#include "satcap/model/tfjs_model.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "satcap/runtime/json_value.h"
#include "satcap/runtime/sha256.h"
#include "satcap/runtime/torch_error.h"

namespace fs = std::filesystem;

namespace satcap {

// ---------------------------------------------------------------------------------------------
// Named tensors (see named_tensors.h)

std::string shape_text(at::IntArrayRef sizes) {
  std::string s = "[";
  for (std::size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

void write_named_tensors(torch::serialize::OutputArchive& archive, const torch::nn::Module& module,
                         const std::string& prefix) {
  for (auto& item : module.named_parameters(/*recurse=*/true))
    archive.write(prefix + item.key(), item.value().detach().to(c10::kCPU));
  for (auto& item : module.named_buffers(/*recurse=*/true))
    archive.write(prefix + item.key(), item.value().to(c10::kCPU), /*is_buffer=*/true);
}

void read_named_tensors(torch::serialize::InputArchive& archive, torch::nn::Module& module,
                        const std::string& where, const std::string& prefix) {
  at::NoGradGuard no_grad;
  auto load = [&](const std::string& key, at::Tensor& target, bool is_buffer) {
    at::Tensor value;
    if (!archive.try_read(prefix + key, value, is_buffer))
      throw ModelError(where + ": tensor '" + key + "' is missing (the weights do not match this model's options)");
    if (value.sizes() != target.sizes())
      throw ModelError(where + ": tensor '" + key + "' has wrong shape: got " + shape_text(value.sizes()) +
                       ", expected " + shape_text(target.sizes()));
    if (value.scalar_type() != target.scalar_type()) value = value.to(target.scalar_type());
    target.copy_(value);
  };
  for (auto& item : module.named_parameters(true)) load(item.key(), item.value(), false);
  for (auto& item : module.named_buffers(true)) load(item.key(), item.value(), true);
}

void write_archive_atomic(const fs::path& path, torch::serialize::OutputArchive& archive, ParentDirs parents) {
  AtomicFile file(path, parents);
  try {
    // Every piece is acknowledged, even after a failed write (the file then drops the rest, and
    // commit() reports the system's reason naming the file): told of a short write, LibTorch
    // 1.13's writer throws, and its destructor, finishing the archive, throws again during that
    // unwinding, which ends the process (std::terminate).
    archive.save_to([&file](const void* data, std::size_t size) -> std::size_t {
      file.write_noexcept(data, size);
      return size;
    });
  } catch (const std::exception& e) {
    file.throw_if_failed();
    throw OutputError(path.string() + ": cannot serialize (" + exception_text(e) + ")");
  }
  file.commit();
}

// ---------------------------------------------------------------------------------------------
// Bundles

std::string Bundle::encoder_identity() const {
  if (encoder.is_object()) {
    auto it = encoder.find("identity");
    if (it != encoder.end() && it->is_string()) return it->get<std::string>();
  }
  return "";
}

std::string Bundle::encoder_tuned_tag() const {
  if (!encoder.is_object()) return "";
  auto it = encoder.find("fine_tuned");
  if (it == encoder.end() || !it->is_object()) return "";
  auto digest = it->find("digest");
  return digest != it->end() && digest->is_string() ? digest->get<std::string>() : "";
}

void Bundle::require_encoder(const std::string& identity, const std::string& what) const {
  std::string mine = encoder_identity();
  if (identity.empty() || mine == identity) return;
  if (!encoder_tuned_tag().empty())
    throw ModelError("the model " + dir.string() + " fine-tuned its encoder (identity '" + mine + "'), but " + what +
                     " uses encoder '" + identity +
                     "'; features of another (or the frozen) encoder cannot be used with it: caption or evaluate "
                     "from the images (without --features), which encodes them with the fine-tuned encoder");
  throw ModelError("the model " + dir.string() + " was trained on features of encoder '" + mine + "', but " + what +
                   " uses encoder '" + identity +
                   "'; use the encoder the model was trained with, or retrain the model on these features");
}

fs::path resolve_bundle_dir(const fs::path& dir) {
  if (!fs::exists(dir / "config.json") && fs::exists(dir / "model" / "config.json")) return dir / "model";
  return dir;
}

int bundle_format_for(const Bundle& bundle) {
  return std::max(decoder_options_format(bundle.decoder_options), bundle.encoder_weights.empty() ? 1 : 2);
}

namespace {

// The name of a file of the bundle (config.json's "weights", "vocab", "files", the fine-tuned
// encoder's "weights") as the file: a relative path inside the bundle folder naming a regular file.
// A link is followed only while it stays inside the folder: no /dev/zero, FIFO, "../x" or absolute
// path can be made to stand for a bundle file.
fs::path bundle_member(const fs::path& dir, const fs::path& config_path, const std::string& key,
                       const std::string& name) {
  auto refuse = [&](const std::string& why) {
    throw ModelError(config_path.string() + ": \"" + key + "\" names '" + name + "', " + why +
                     "; a bundle's files must be regular files inside its folder " + dir.string());
  };
  const fs::path rel(name);
  if (name.empty()) refuse("an empty name");
  if (rel.is_absolute()) refuse("an absolute path");
  for (const auto& part : rel)
    if (part == "..") refuse("a path out of the folder");
  const fs::path path = dir / rel;
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw ModelError(path.string() + ": missing; the model bundle " + dir.string() +
                     " is incomplete (copy the whole folder, or train it again)");
  const fs::path real = fs::canonical(path, ec), real_dir = fs::canonical(dir, ec);
  if (ec || std::mismatch(real_dir.begin(), real_dir.end(), real.begin(), real.end()).first != real_dir.end())
    refuse("a link to " + real.string() + " outside the folder");
  try {
    require_regular_file(real, ExitCode::model);
  } catch (const ModelError& e) {
    refuse(std::string(e.what()).substr(real.string().size() + 2));
  }
  return path;
}

// config.json's "files": the size and SHA-256 of every other file of the bundle. The same record
// the PyTorch-tutorial importer writes.
nlohmann::json bundle_checksums(const fs::path& dir, const std::vector<std::string>& names) {
  nlohmann::json files = nlohmann::json::object();
  for (const auto& name : names) {
    const FileChecksum c = file_checksum(dir / name, ExitCode::output);
    files[name] = {{"sha256", c.sha256}, {"bytes", c.bytes}};
  }
  return files;
}

// Checks every file "files" lists against its record; returns the names listed. ModelError naming
// the file that was altered (or truncated, or replaced) after the bundle was written.
std::vector<std::string> verify_checksums(const fs::path& dir, const fs::path& config_path, const nlohmann::json& files) {
  const std::string where = config_path.string();
  if (!files.is_object()) throw ModelError(where + ": \"files\" must be an object of file name -> {sha256, bytes}");
  std::vector<std::string> names;
  for (auto it = files.begin(); it != files.end(); ++it) {
    if (it.key() == "config.json") continue;  // a file cannot record its own checksum
    const std::string key = "files." + it.key();
    const fs::path path = bundle_member(dir, config_path, key, it.key());
    const auto sha = json_field<std::string>(it.value(), "sha256", where + ": \"" + key + "\"", ExitCode::model);
    const auto bytes = json_field<std::uint64_t>(it.value(), "bytes", where + ": \"" + key + "\"", ExitCode::model);
    const FileChecksum c = file_checksum(path, ExitCode::model);
    if (c.bytes != bytes || c.sha256 != sha)
      throw ModelError(path.string() + ": altered after the bundle was written (" +
                       (c.bytes != bytes ? std::to_string(c.bytes) + " bytes, config.json records " + std::to_string(bytes)
                                         : "its SHA-256 differs from the one config.json records") +
                       "); restore the bundle's original files, or train the model again");
    names.push_back(it.key());
  }
  return names;
}

// ModelError naming the tensor when a weight is NaN or infinite (a model saved after training
// diverged, or a corrupted file): such a model captions every image with "" or garbage.
void require_finite(const std::string& where, const std::string& name, const at::Tensor& t) {
  if (t.is_floating_point() && t.numel() > 0 && !at::isfinite(t).all().item<bool>())
    throw ModelError(where + ": tensor '" + name + "' holds non-finite values (NaN or infinity); the model is broken "
                     "(saved after training diverged?): train it again or use another model");
}

}  // namespace

void save_bundle(const Bundle& bundle, const fs::path& dir_in) {
  if (!bundle.decoder) throw OutputError(dir_in.string() + ": no decoder to save");
  fs::path dir = fs::absolute(dir_in).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();
  std::error_code ec;
  fs::create_directories(dir.parent_path(), ec);
  recover_interrupted_bundle(dir);
  fs::path tmp = dir;
  tmp += temporary_suffix();
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec)) throw OutputError(tmp.string() + ": cannot create directory: " + ec.message());
  // Whatever fails below, the half-written folder goes.
  struct RemoveOnFailure {
    fs::path path;
    ~RemoveOnFailure() {
      std::error_code ignored;
      if (!path.empty()) fs::remove_all(path, ignored);
    }
  } cleanup{tmp};

  nlohmann::json config;
  // The oldest format that holds this bundle, so older satcaps read what they can read correctly.
  config["format_version"] = bundle_format_for(bundle);
  config["satcap_version"] = SATCAP_VERSION;
  config["encoder"] = bundle.encoder;
  std::vector<std::string> files = {"weights.pt", "vocab.json"};
  if (!bundle.encoder_weights.empty()) {
    // The identity of the tuned encoder: the frozen one's plus the digest of its tuned weights.
    std::string base = bundle.encoder_identity();
    if (bundle.encoder.contains("fine_tuned") && bundle.encoder["fine_tuned"].is_object())
      base = json_field_or<std::string>(bundle.encoder["fine_tuned"], "base_identity", base, "bundle encoder",
                                        ExitCode::model);  // a loaded bundle saved again
    torch::serialize::OutputArchive encoder_archive;
    for (const auto& [name, t] : bundle.encoder_weights) encoder_archive.write(name, t.detach().to(c10::kCPU));
    write_archive_atomic(tmp / "encoder_weights.pt", encoder_archive);
    const std::string digest = file_digest(tmp / "encoder_weights.pt");
    config["encoder"]["identity"] = base + ":tuned=" + digest;
    config["encoder"]["fine_tuned"] = {{"weights", "encoder_weights.pt"}, {"digest", digest}, {"base_identity", base},
                                       {"tensors", bundle.encoder_weights.size()}};
    files.push_back("encoder_weights.pt");
  }
  config["decoder"] = decoder_options_json(bundle.decoder_options, config["format_version"].get<int>());
  config["training"] = bundle.training.is_null() ? nlohmann::json::object() : bundle.training;
  config["weights"] = "weights.pt";
  config["vocab"] = "vocab.json";

  torch::serialize::OutputArchive archive;
  write_named_tensors(archive, *bundle.decoder);
  write_archive_atomic(tmp / "weights.pt", archive);
  bundle.vocab.save(tmp / "vocab.json");
  // Read back from the disk: the checksums are of what a reader will find.
  config["files"] = bundle_checksums(tmp, files);
  write_file_atomic(tmp / "config.json", config.dump(2) + "\n");  // last: its presence marks a complete bundle
  fsync_directory(tmp);

  // Swap into place: the old bundle is moved aside first and only removed once the new one is in.
  fs::path old = dir;
  old += ".old-" + std::to_string(::getpid());
  bool had_old = fs::exists(dir);
  if (had_old) {
    fs::remove_all(old, ec);
    if (::rename(dir.c_str(), old.c_str()) != 0)
      throw OutputError(dir.string() + ": cannot replace the previous model: " + errno_text());
  }
  fault_point("bundle-swap");
  if (::rename(tmp.c_str(), dir.c_str()) != 0) {
    std::string why = errno_text();
    if (had_old) ::rename(old.c_str(), dir.c_str());
    throw OutputError(dir.string() + ": " + why);
  }
  cleanup.path.clear();
  fsync_directory(dir.parent_path());
  if (had_old) fs::remove_all(old, ec);
}

void recover_interrupted_bundle(const fs::path& dir_in) {
  fs::path dir = dir_in.lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    // Killed between moving the old bundle aside and renaming the new one in: the new one, if it
    // was complete (its config.json is written last), else the old one.
    std::vector<fs::path> complete, previous;
    const std::string base = dir.filename().string();
    for (fs::directory_iterator it(dir.has_parent_path() ? dir.parent_path() : fs::path("."), ec), end; !ec && it != end;
         it.increment(ec)) {
      const std::string name = it->path().filename().string();
      for (const char* marker : {".tmp-", ".old-"}) {
        const std::string prefix = base + marker;
        if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) continue;
        const std::string digits = name.substr(prefix.size());
        if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 10) continue;
        if (process_alive(std::stol(digits))) continue;
        if (marker[1] == 't' && fs::exists(it->path() / "config.json")) complete.push_back(it->path());
        if (marker[1] == 'o') previous.push_back(it->path());
      }
    }
    const fs::path* back = !complete.empty() ? &complete.front() : !previous.empty() ? &previous.front() : nullptr;
    if (back) ::rename(back->c_str(), dir.c_str());
  }
  remove_stale_temporaries(dir, {".tmp-", ".old-"});
}

Bundle load_bundle(const fs::path& dir_in, const std::string& expected_encoder_identity, c10::Device device) {
  if (fs::is_regular_file(dir_in)) {
    const std::string ext = dir_in.extension().string();
    const bool pytorch = ext == ".tar" || ext == ".pth" || ext == ".pt" || ext == ".ckpt";
    throw ModelError(dir_in.string() + ": a file, not a model folder (a folder holding config.json, vocab.json and "
                                       "weights.pt)" +
                     (pytorch ? std::string("; a checkpoint of the PyTorch tutorial (a-PyTorch-Tutorial-to-Image-"
                                            "Captioning) becomes one with tools/import_tutorial.py (docs/import.md)")
                              : std::string()));
  }
  fs::path dir = resolve_bundle_dir(dir_in);
  if (!fs::is_directory(dir))
    throw ModelError(dir.string() + ": no such model directory (train one with `satcap train`, or give the path "
                                    "of a folder holding config.json, vocab.json and weights.pt)");
  fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path))
    throw ModelError(config_path.string() + ": missing; " + dir.string() +
                     " is not a complete model bundle (it needs config.json, vocab.json and weights.pt)");
  const std::string where = config_path.string();
  const nlohmann::json config = read_json_file(config_path, ExitCode::model);
  if (!config.is_object()) throw ModelError(where + ": malformed: expected a JSON object");
  const int format = json_field<int>(config, "format_version", where, ExitCode::model);
  if (format > kBundleFormatVersion)
    throw ModelError(where + ": this bundle was written by a newer satcap (format " + std::to_string(format) + " > " +
                     std::to_string(kBundleFormatVersion) + "); upgrade satcap");
  if (format < 1) throw ModelError(where + ": malformed: format_version " + std::to_string(format));

  Bundle bundle;
  bundle.dir = dir;
  bundle.format_version = format;
  bundle.satcap_version = json_field_or<std::string>(config, "satcap_version", "unknown", where, ExitCode::model);
  bundle.encoder = config.value("encoder", nlohmann::json::object());
  if (!bundle.encoder.is_object()) throw ModelError(where + ": \"encoder\" must be an object (got " + bundle.encoder.dump() + ")");
  bundle.training = config.value("training", nlohmann::json::object());
  if (!bundle.training.is_object()) throw ModelError(where + ": \"training\" must be an object");
  auto dec = config.find("decoder");
  if (dec == config.end() || !dec->is_object())
    throw ModelError(where + ": malformed: \"decoder\" options missing");
  try {
    bundle.decoder_options = dec->get<DecoderOptions>();
  } catch (const Error& e) {
    throw ModelError(where + ": " + e.what());
  }
  if (!expected_encoder_identity.empty()) bundle.require_encoder(expected_encoder_identity, "the input");

  // Every file the bundle names stays inside its folder; with "files", each is checked against
  // the checksum recorded when the bundle was written (bundles before it have none).
  auto member = [&](const char* key, const std::string& fallback) {
    return bundle_member(dir, config_path, key, json_field_or<std::string>(config, key, fallback, where, ExitCode::model));
  };
  const fs::path vocab_path = member("vocab", "vocab.json"), weights_path = member("weights", "weights.pt");
  std::vector<std::string> checked;
  const bool has_checksums = config.contains("files");
  if (has_checksums) checked = verify_checksums(dir, config_path, config["files"]);
  auto require_checked = [&](const fs::path& path) {
    if (!has_checksums) return;
    const std::string rel = path.lexically_relative(dir).string();
    if (std::find(checked.begin(), checked.end(), rel) == checked.end())
      throw ModelError(where + ": \"files\" has no checksum of " + rel + ", which the bundle uses");
  };
  require_checked(vocab_path);
  require_checked(weights_path);

  bundle.vocab = Vocabulary::load(vocab_path);
  if (static_cast<int64_t>(bundle.vocab.size()) != bundle.decoder_options.vocab_size)
    throw ModelError(vocab_path.string() + ": " + std::to_string(bundle.vocab.size()) +
                     " words, but the decoder in config.json has a vocabulary of " +
                     std::to_string(bundle.decoder_options.vocab_size) + "; the bundle's files do not belong together");

  try {
    bundle.decoder = Decoder(bundle.decoder_options);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw ModelError(where + ": cannot build the decoder from its options: " + exception_text(e));
  }
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(weights_path.string());
  } catch (const std::exception& e) {
    throw ModelError(weights_path.string() + ": not a satcap weights file (truncated or corrupt): " +
                     exception_text(e).substr(0, 200));
  }
  read_named_tensors(archive, *bundle.decoder, weights_path.string());
  for (const auto& item : bundle.decoder->named_parameters(true)) require_finite(weights_path.string(), item.key(), item.value());
  for (const auto& item : bundle.decoder->named_buffers(true)) require_finite(weights_path.string(), item.key(), item.value());
  if (format >= 2 && bundle.encoder.contains("fine_tuned")) {
    const nlohmann::json& ft = bundle.encoder["fine_tuned"];
    if (!ft.is_object() || !ft.contains("weights") || !ft["weights"].is_string() || bundle.encoder_tuned_tag().empty())
      throw ModelError(where + ": malformed: encoder \"fine_tuned\" needs \"weights\" and \"digest\"");
    const fs::path encoder_path =
        bundle_member(dir, config_path, "encoder.fine_tuned.weights", ft["weights"].get<std::string>());
    require_checked(encoder_path);
    torch::serialize::InputArchive encoder_archive;
    try {
      encoder_archive.load_from(encoder_path.string());
    } catch (const std::exception& e) {
      throw ModelError(encoder_path.string() + ": not a satcap weights file (truncated or corrupt): " +
                       exception_text(e).substr(0, 200));
    }
    for (const auto& name : encoder_archive.keys()) {
      at::Tensor t;
      encoder_archive.read(name, t);
      require_finite(encoder_path.string(), name, t);
      bundle.encoder_weights[name] = t;
    }
    if (bundle.encoder_weights.empty()) throw ModelError(encoder_path.string() + ": holds no tensors");
  }
  bundle.decoder->to(device);
  bundle.decoder->eval();
  return bundle;
}

}  // namespace satcap
