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
#include "satcap/runtime/json_input.h"

namespace fs = std::filesystem;

namespace satcap {

namespace {

std::string errno_text() { return std::strerror(errno); }

}  // namespace


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

void write_archive_atomic(const fs::path& path, torch::serialize::OutputArchive& archive) {
  write_file_atomic(path, [&archive](const ByteSink& sink) {
    // Every piece is acknowledged, even after a failed write (the sink then drops the rest, and
    // write_file_atomic reports the system's reason naming the file): told of a short write,
    // LibTorch 1.13's writer throws, and its destructor, finishing the archive, throws again
    // during that unwinding, which ends the process (std::terminate).
    archive.save_to([&sink](const void* data, std::size_t size) -> std::size_t {
      sink(data, size);
      return size;
    });
  });
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
  return it->value("digest", std::string());
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

void save_bundle(const Bundle& bundle, const fs::path& dir_in) {
  if (!bundle.decoder) throw OutputError(dir_in.string() + ": no decoder to save");
  fs::path dir = fs::absolute(dir_in).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();
  std::error_code ec;
  fs::create_directories(dir.parent_path(), ec);
  fs::path tmp = dir;
  tmp += temporary_suffix();
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec)) throw OutputError(tmp.string() + ": cannot create directory: " + ec.message());

  nlohmann::json config;
  // The oldest format that holds this bundle, so older satcaps read what they can read correctly.
  config["format_version"] = bundle_format_for(bundle);
  config["satcap_version"] = SATCAP_VERSION;
  config["encoder"] = bundle.encoder;
  if (!bundle.encoder_weights.empty()) {
    // The identity of the tuned encoder: the frozen one's plus the digest of its tuned weights.
    std::string base = bundle.encoder_identity();
    if (bundle.encoder.contains("fine_tuned") && bundle.encoder["fine_tuned"].is_object())
      base = bundle.encoder["fine_tuned"].value("base_identity", base);  // a loaded bundle saved again
    torch::serialize::OutputArchive encoder_archive;
    for (const auto& [name, t] : bundle.encoder_weights) encoder_archive.write(name, t.detach().to(c10::kCPU));
    write_archive_atomic(tmp / "encoder_weights.pt", encoder_archive);
    const std::string digest = file_digest(tmp / "encoder_weights.pt");
    config["encoder"]["identity"] = base + ":tuned=" + digest;
    config["encoder"]["fine_tuned"] = {{"weights", "encoder_weights.pt"}, {"digest", digest}, {"base_identity", base},
                                       {"tensors", bundle.encoder_weights.size()}};
  }
  config["decoder"] = decoder_options_json(bundle.decoder_options, config["format_version"].get<int>());
  config["training"] = bundle.training.is_null() ? nlohmann::json::object() : bundle.training;
  config["weights"] = "weights.pt";
  config["vocab"] = "vocab.json";

  torch::serialize::OutputArchive archive;
  write_named_tensors(archive, *bundle.decoder);
  write_archive_atomic(tmp / "weights.pt", archive);
  bundle.vocab.save(tmp / "vocab.json");
  write_file_atomic(tmp / "config.json", config.dump(2) + "\n");  // last: its presence marks a complete bundle
  fsync_directory(tmp);

  // Swap into place: the old bundle is moved aside first and only removed once the new one is in.
  fs::path old = dir;
  old += ".old-" + std::to_string(::getpid());
  bool had_old = fs::exists(dir);
  if (had_old) {
    fs::remove_all(old, ec);
    if (::rename(dir.c_str(), old.c_str()) != 0) {
      std::string why = errno_text();
      fs::remove_all(tmp, ec);
      throw OutputError(dir.string() + ": cannot replace the previous model: " + why);
    }
  }
  if (::rename(tmp.c_str(), dir.c_str()) != 0) {
    std::string why = errno_text();
    if (had_old) ::rename(old.c_str(), dir.c_str());
    fs::remove_all(tmp, ec);
    throw OutputError(dir.string() + ": " + why);
  }
  fsync_directory(dir.parent_path());
  if (had_old) fs::remove_all(old, ec);
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
  nlohmann::json config;
  {
    std::ifstream in(config_path, std::ios::binary);
    if (!in) throw ModelError(config_path.string() + ": cannot read");
    try {
      config = nlohmann::json::parse(in, json_depth_limit(config_path.string(), ExitCode::model));
    } catch (const nlohmann::json::exception& e) {
      throw ModelError(config_path.string() + ": malformed JSON (" + e.what() + ")");
    }
  }
  if (!config.is_object()) throw ModelError(config_path.string() + ": malformed: expected a JSON object");
  auto fv = config.find("format_version");
  if (fv == config.end() || !fv->is_number_integer())
    throw ModelError(config_path.string() + ": malformed: \"format_version\" missing or not an integer");
  int format = fv->get<int>();
  if (format > kBundleFormatVersion)
    throw ModelError(config_path.string() + ": this bundle was written by a newer satcap (format " +
                     std::to_string(format) + " > " + std::to_string(kBundleFormatVersion) + "); upgrade satcap");
  if (format < 1) throw ModelError(config_path.string() + ": malformed: format_version " + std::to_string(format));

  Bundle bundle;
  bundle.dir = dir;
  bundle.format_version = format;
  bundle.satcap_version = config.value("satcap_version", std::string("unknown"));
  bundle.encoder = config.value("encoder", nlohmann::json::object());
  bundle.training = config.value("training", nlohmann::json::object());
  auto dec = config.find("decoder");
  if (dec == config.end() || !dec->is_object())
    throw ModelError(config_path.string() + ": malformed: \"decoder\" options missing");
  try {
    bundle.decoder_options = dec->get<DecoderOptions>();
  } catch (const Error& e) {
    throw ModelError(config_path.string() + ": malformed decoder options: " + e.what());
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(config_path.string() + ": malformed decoder options: " + e.what());
  }
  if (!expected_encoder_identity.empty()) bundle.require_encoder(expected_encoder_identity, "the input");

  std::string vocab_name = config.value("vocab", std::string("vocab.json"));
  std::string weights_name = config.value("weights", std::string("weights.pt"));
  fs::path vocab_path = dir / vocab_name, weights_path = dir / weights_name;
  if (!fs::exists(vocab_path))
    throw ModelError(vocab_path.string() + ": missing; the model bundle " + dir.string() +
                     " is incomplete (copy the whole folder, or train it again)");
  if (!fs::exists(weights_path))
    throw ModelError(weights_path.string() + ": missing; the model bundle " + dir.string() +
                     " is incomplete (copy the whole folder, or train it again)");
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
    throw ModelError(config_path.string() + ": cannot build the decoder from its options: " + e.what());
  }
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(weights_path.string());
  } catch (const std::exception& e) {
    throw ModelError(weights_path.string() + ": not a satcap weights file (truncated or corrupt): " +
                     std::string(e.what()).substr(0, 200));
  }
  read_named_tensors(archive, *bundle.decoder, weights_path.string());
  if (format >= 2 && bundle.encoder.contains("fine_tuned")) {
    const nlohmann::json& ft = bundle.encoder["fine_tuned"];
    if (!ft.is_object() || !ft.contains("weights") || !ft["weights"].is_string() || bundle.encoder_tuned_tag().empty())
      throw ModelError(config_path.string() + ": malformed: encoder \"fine_tuned\" needs \"weights\" and \"digest\"");
    fs::path encoder_path = dir / ft["weights"].get<std::string>();
    if (!fs::exists(encoder_path))
      throw ModelError(encoder_path.string() + ": missing; the model bundle " + dir.string() +
                       " (fine-tuned encoder) is incomplete (copy the whole folder, or train it again)");
    torch::serialize::InputArchive encoder_archive;
    try {
      encoder_archive.load_from(encoder_path.string());
    } catch (const std::exception& e) {
      throw ModelError(encoder_path.string() + ": not a satcap weights file (truncated or corrupt): " +
                       std::string(e.what()).substr(0, 200));
    }
    for (const auto& name : encoder_archive.keys()) {
      at::Tensor t;
      encoder_archive.read(name, t);
      bundle.encoder_weights[name] = t;
    }
    if (bundle.encoder_weights.empty()) throw ModelError(encoder_path.string() + ": holds no tensors");
  }
  bundle.decoder->to(device);
  bundle.decoder->eval();
  return bundle;
}

}  // namespace satcap
