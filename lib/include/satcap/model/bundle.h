// A trained model is one directory, the "bundle":
//   config.json   format_version, satcap version, the encoder's describe() JSON (identity and
//                 preprocessing), the decoder's options, a training summary;
//   vocab.json    the vocabulary (vocab.h);
//   weights.pt    the decoder's named tensors (parameters and buffers) in LibTorch's archive
//                 format (torch::serialize::OutputArchive): no pickled Python object;
//   encoder_weights.pt  only for a model trained with --fine-tune-encoder: the fine-tuned
//                 encoder tensors by Encoder::named_trainable_parameters() name. config.json's
//                 "encoder" then has "fine_tuned": {"weights", "digest", "base_identity"}, its
//                 identity is "<base identity>:tuned=<digest>".
// config.json's "files" ({"weights.pt": {"sha256": "<64 lowercase hex>", "bytes": N}, ...}) records
// every other file; load_bundle refuses a file altered since (bundles without "files" still load).
// The names config.json gives its files must be regular files inside the bundle folder.
// format_version is the oldest format that holds the bundle, so that an older satcap reads every
// bundle it can read correctly and refuses the others: 1; 2 with a fine-tuned encoder's weights
// (readers of format 1 would ignore them); 3 with a decoder whose initial state is linear (the
// PyTorch tutorial's; readers of formats 1-2 would put tanh on it). Formats 1-2 name two decoder
// options as they did then (doubly_stochastic_lambda, init_mlp).
// A bundle is written to a temporary sibling directory and renamed into place, so a reader sees
// the previous complete bundle or the new one, never a mixture; the previous good bundle is only
// removed once the new one is in place.
#pragma once

#include "satcap/runtime/atomic_file.h"  // write_file_atomic, used by bundle and checkpoint writers

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>

#include "satcap/model/decoder.h"
#include "satcap/model/vocab.h"

namespace satcap {

// The newest bundle format this satcap reads and writes; newer ones are refused.
constexpr int kBundleFormatVersion = 3;

struct Bundle {
  std::filesystem::path dir;      // where it was loaded from / written to
  int format_version = kBundleFormatVersion;
  std::string satcap_version;     // of the satcap that wrote it
  nlohmann::json encoder;         // Encoder::describe() of the features it was trained on
  DecoderOptions decoder_options;
  Vocabulary vocab;
  Decoder decoder{nullptr};
  nlohmann::json training;        // training summary and effective options (informative)
  // Fine-tuned encoder tensors (empty = the encoder described by `encoder` is used frozen). When
  // saving, `encoder` is the describe() of the encoder before tuning; save_bundle adds the tag.
  std::map<std::string, at::Tensor> encoder_weights;

  // The encoder identity stored in config.json ("" when absent).
  std::string encoder_identity() const;
  // Throws ModelError when `identity` (of the encoder or feature store in use, described by
  // `what`, e.g. "feature store out/features") differs from the bundle's, saying what to do.
  void require_encoder(const std::string& identity, const std::string& what) const;
  // The digest tagging the fine-tuned encoder weights ("" for a frozen encoder).
  std::string encoder_tuned_tag() const;
};

// The format save_bundle writes `bundle` in (see the top of this header).
int bundle_format_for(const Bundle& bundle);

// Writes `bundle` (its decoder, vocab, options, encoder description, training summary) to `dir`
// atomically. Throws OutputError naming the path when it cannot be written.
void save_bundle(const Bundle& bundle, const std::filesystem::path& dir);

// Loads a bundle from `dir` (or from `dir`/model when `dir` is a training output folder) onto
// `device`. Throws ModelError for a missing piece (naming the file), a malformed config, a newer
// format_version, a file named outside the folder or altered since it was written, weights that
// do not fit the options or are not finite; when `expected_encoder_identity` is
// not empty, also when the bundle was trained on features of another encoder.
Bundle load_bundle(const std::filesystem::path& dir, const std::string& expected_encoder_identity = "",
                   c10::Device device = c10::Device(c10::kCPU));

// What a satcap process killed during save_bundle(dir) left: when `dir` is missing, the complete
// new bundle (or else the previous one) moved aside under "<dir>.tmp-<pid>" / "<dir>.old-<pid>" is
// put back; the other leftovers of dead processes are removed. Called by save_bundle.
void recover_interrupted_bundle(const std::filesystem::path& dir);

// The folder load_bundle would read for `dir` (dir itself, or dir/model).
std::filesystem::path resolve_bundle_dir(const std::filesystem::path& dir);


}  // namespace satcap
