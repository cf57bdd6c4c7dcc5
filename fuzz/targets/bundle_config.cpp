// A model bundle's config.json (lib/src/model/bundle.cpp's load_bundle: the format, the encoder
// description, the decoder options, the names of the other files), next to the vocab.json and
// weights.pt of a small decoder saved once per process.
#include <filesystem>

#include "fuzz_target.h"
#include "satcap/model/bundle.h"

namespace {

// A bundle of a decoder with 8-wide layers over a 9-word vocabulary (config.json as saved is the seed).
const std::filesystem::path& saved_bundle() {
  static const std::filesystem::path dir = [] {
    using namespace satcap;
    Bundle b;
    b.vocab = Vocabulary::build({{"a", "dog", "runs"}, {"a", "cat", "sits", "on", "grass"}}, VocabOptions{1, 20, 0});
    b.decoder_options.vocab_size = static_cast<int>(b.vocab.size());
    b.decoder_options.feature_dim = 8;
    b.decoder_options.embed_dim = b.decoder_options.attention_dim = b.decoder_options.hidden_dim = 8;
    b.decoder = Decoder(b.decoder_options);
    b.encoder = {{"identity", "fuzz-encoder"}};
    const auto path = fuzz::scratch() / "saved_bundle";
    save_bundle(b, path);
    return path;
  }();
  return dir;
}

}  // namespace

SATCAP_FUZZ_TARGET(bundle_config) {
  using namespace satcap;
  namespace fs = std::filesystem;
  const fs::path dir = fuzz::fresh_folder("bundle");
  for (const char* f : {"vocab.json", "weights.pt"}) fs::copy_file(saved_bundle() / f, dir / f);
  fuzz::write_input("bundle/config.json", data, size);
  (void)load_bundle(dir);
}
