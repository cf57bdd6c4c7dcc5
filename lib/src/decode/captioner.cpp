#include "satcap/decode/captioner.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <iomanip>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "satcap/build_config.h"
#include "satcap/decode/search.h"
#include "satcap/model/bundle.h"
#include "satcap/model/decoder.h"
#include "satcap/model/encoder.h"
#include "satcap/model/vocab.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/torch_error.h"
#include "satcap/runtime/precision.h"
#include "satcap/runtime/runtime.h"

namespace satcap {

namespace fs = std::filesystem;

fs::path default_model_dir() {
  if (const char* env = std::getenv("SATCAP_MODEL"); env != nullptr && *env != '\0') return env;
  return fs::path(SATCAP_DEFAULT_MODELS_DIR) / "default";
}

void validate(const CaptionerOptions& o) {
  auto bad = [](const std::string& what) { throw UsageError(what); };
  o.search.validate("--");
  if (o.batch_size < 1 || o.batch_size > 4096)
    bad("--batch must be between 1 and 4096 (got " + std::to_string(o.batch_size) + ")");
  if (o.samples_per_word < 0 || o.samples_per_word > 1000)
    bad("--samples-per-word must be between 0 and 1000 (got " + std::to_string(o.samples_per_word) + ")");
}

std::string ImageCaption::caption() const {
  std::string s;
  for (const auto& w : words) {
    if (!s.empty()) s += ' ';
    s += w;
  }
  return s;
}

CaptionedImage ImageCaption::to_captioned_image() const {
  CaptionedImage ci;
  ci.image_path = path.string();
  ci.rgb = rgb;
  ci.words = words;
  ci.alpha = alpha;
  ci.grid_rows = grid_rows;
  ci.grid_cols = grid_cols;
  ci.score = score;
  ci.alternatives = alternatives;
  ci.sampled = sampled;
  return ci;
}

// --- Captioner -----------------------------------------------------------------------------------

namespace {

// Where the TorchScript file a bundle's config.json names lies. A relative path is the bundle's own
// first (bundle/path, then bundle/<file name>: an imported bundle, or one copied with its encoder),
// so that a file of the same name in the current directory (another bundle's, when captioning from
// inside its folder) is never taken instead; as written (from the current directory) only when the
// bundle holds neither (a model trained with `--encoder RELATIVE/PATH.pt`, used from that folder).
fs::path bundle_encoder_file(const fs::path& bundle_dir, const fs::path& file) {
  if (file.empty() || file.is_absolute()) return file;
  for (const fs::path& own : {bundle_dir / file, bundle_dir / file.filename()})
    if (fs::exists(own)) return own;
  return file;
}

// The encoder a bundle's config.json describes (Encoder::describe() of the features it was trained on).
EncoderOptions encoder_options_for(const Bundle& bundle, const std::string& models_dir) {
  const fs::path config = bundle.dir / "config.json";
  const nlohmann::json& e = bundle.encoder;
  if (!e.is_object() || e.empty())
    throw ModelError(config.string() + ": no \"encoder\" description; the model does not say which encoder made its features");
  EncoderOptions options;
  options.models_dir = models_dir;
  const std::string source = e.value("source", std::string());
  if (source == "embedded") {
    options.source = e.value("name", std::string());
  } else if (source == "torchscript") {
    options.source = bundle_encoder_file(bundle.dir, e.value("file", std::string())).string();
  } else {
    throw ModelError(config.string() + ": encoder source '" + source + "' is not one satcap knows (embedded, torchscript)");
  }
  if (options.source.empty()) throw ModelError(config.string() + ": the encoder description names no network");
  auto grid = e.find("grid");
  if (grid != e.end()) {
    if (!grid->is_array() || grid->size() != 2 || !(*grid)[0].is_number_integer() || (*grid)[0] != (*grid)[1])
      throw ModelError(config.string() + ": encoder \"grid\" must be [rows, rows]");
    options.grid = (*grid)[0].get<int>();
  }
  if (!bundle.encoder_weights.empty()) {  // a fine-tuned encoder: its tuned blocks are separate layers
    auto blocks = e.find("trainable_blocks");
    if (blocks == e.end() || !blocks->is_number_integer() || blocks->get<int>() < 1)
      throw ModelError(config.string() + ": the fine-tuned encoder's \"trainable_blocks\" is missing");
    options.trainable_blocks = blocks->get<int>();
  }
  return options;
}

// Every region index drawn `count` times from alpha (a probability row), with `rng`.
std::vector<int> draw_regions(const std::vector<float>& alpha, int count, std::mt19937_64& rng) {
  std::vector<double> w(alpha.begin(), alpha.end());
  for (auto& x : w)
    if (!(std::isfinite(x) && x > 0)) x = 0;
  std::vector<int> out;
  if (std::all_of(w.begin(), w.end(), [](double x) { return x == 0; })) return out;
  std::discrete_distribution<int> pick(w.begin(), w.end());
  for (int k = 0; k < count; ++k) out.push_back(pick(rng));
  return out;
}

}  // namespace

std::unique_ptr<Encoder> load_bundle_encoder(const Bundle& bundle, const std::string& models_dir, c10::Device device,
                                             bool trainable) {
  EncoderOptions eo = encoder_options_for(bundle, models_dir);
  const std::string where = (bundle.dir / "config.json").string();
  std::unique_ptr<Encoder> encoder;
  try {
    encoder = load_encoder(eo);
  } catch (const UsageError& e) {
    throw ModelError(where + ": cannot load the encoder it names: " + e.what());
  }
  encoder->to(device);
  encoder->train(false);
  if (!bundle.encoder_weights.empty()) {
    encoder->load_trainable(bundle.encoder_weights, (bundle.dir / "encoder_weights.pt").string());
    encoder->set_tuned_tag(bundle.encoder_tuned_tag());
    if (!trainable) encoder->freeze();
  }
  bundle.require_encoder(encoder->identity(), "the encoder loaded now (" + eo.source + ")");
  return encoder;
}

struct Captioner::Impl {
  CaptionerOptions options;
  c10::Device device{c10::kCPU};
  Precision precision = Precision::fp32;
  Bundle bundle;
  std::unique_ptr<Encoder> encoder;
  SearchOptions search;
  SearchTokens tokens;
  double encode_seconds = 0;  // accumulated by caption_batch
  double search_seconds = 0;
};

Captioner::Captioner(const CaptionerOptions& options, c10::Device device) : impl_(std::make_unique<Impl>()) {
  validate(options);
  Impl& m = *impl_;
  m.options = options;
  m.device = device;
  m.precision = options.precision;
  check_precision(m.precision, device);
  fs::path dir = options.model.empty() ? default_model_dir() : fs::path(options.model);
  if (options.model.empty() && !fs::exists(dir))
    throw ModelError(dir.string() + ": the default model is missing; run tools/setup.sh (it installs models/default), "
                                    "set SATCAP_MODEL, or pass --model DIR");
  m.bundle = load_bundle(dir, "", device);

  m.encoder = load_bundle_encoder(m.bundle, options.encoder_models_dir, device);
  const std::string where = (m.bundle.dir / "config.json").string();
  const std::string source = m.encoder->describe().value("name", m.encoder->describe().value("file", std::string()));
  const DecoderOptions& d = m.bundle.decoder_options;
  if (m.encoder->dim() != d.feature_dim)
    throw ModelError(where + ": the decoder takes " + std::to_string(d.feature_dim) + "-dimensional features, the encoder " +
                     source + " gives " + std::to_string(m.encoder->dim()));
  if (d.regions != 0 && m.encoder->regions() != d.regions)
    throw ModelError(where + ": the decoder takes " + std::to_string(d.regions) + " regions, the encoder " + source +
                     " gives " + std::to_string(m.encoder->regions()));
  m.bundle.decoder->eval();

  m.search = options.search;
  m.tokens.start = Vocabulary::start_id;
  m.tokens.end = Vocabulary::end_id;
  m.tokens.banned = {Vocabulary::pad_id, Vocabulary::start_id};
  if (options.ban_unk) m.tokens.banned.push_back(Vocabulary::unk_id);
  at::manual_seed(options.seed);  // hard_decode = sample draws from LibTorch's generator
}

Captioner::~Captioner() = default;

const CaptionerOptions& Captioner::options() const { return impl_->options; }
const Bundle& Captioner::bundle() const { return impl_->bundle; }
Encoder& Captioner::encoder() { return *impl_->encoder; }
fs::path Captioner::model_dir() const { return impl_->bundle.dir; }
bool Captioner::hard_attention() const { return impl_->bundle.decoder_options.attention == AttentionKind::hard; }
int Captioner::grid_rows() const { return impl_->encoder->grid_rows(); }
int Captioner::grid_cols() const { return impl_->encoder->grid_cols(); }

namespace {

// Captions one batch; indices[b] numbers result b (and seeds its attention samples, so that an
// image gets the same samples whatever the batch size).
std::vector<ImageCaption> caption_batch(Captioner::Impl& m, const std::vector<cv::Mat>& rgb,
                                        const std::vector<std::size_t>& indices, bool keep_images) {
  std::vector<ImageCaption> out(rgb.size());
  if (rgb.empty()) return out;
  std::vector<std::vector<Hypothesis>> hyps;
  {
    at::NoGradGuard no_grad;
    AutocastScope autocast(m.precision, m.device);  // fp32: nothing
    const auto t0 = std::chrono::steady_clock::now();
    // [B, n, D]; float32 also under autocast, so that the search sums its scores in float32
    at::Tensor features = m.encoder->encode(rgb).to(at::kFloat);
    const auto t1 = std::chrono::steady_clock::now();
    hyps = search(m.bundle.decoder, features, m.tokens, m.search);
    m.encode_seconds += std::chrono::duration<double>(t1 - t0).count();
    m.search_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  }
  const int rows = m.encoder->grid_rows(), cols = m.encoder->grid_cols();
  const int64_t n = static_cast<int64_t>(rows) * cols;
  for (std::size_t b = 0; b < rgb.size(); ++b) {
    ImageCaption& r = out[b];
    r.index = indices[b];
    r.grid_rows = rows;
    r.grid_cols = cols;
    if (keep_images) r.rgb = rgb[b];
    if (b >= hyps.size() || hyps[b].empty()) continue;  // the search always returns one; defensive
    const Hypothesis& best = hyps[b].front();
    r.tokens = best.tokens;
    for (auto id : best.tokens) r.words.push_back(m.bundle.vocab.word(id));
    r.score = best.score;
    r.log_prob = best.log_prob;
    r.finished = best.finished;
    if (!best.tokens.empty()) {
      at::Tensor a = best.alphas.to(at::kCPU, at::kFloat).contiguous();  // [len, n]
      if (a.dim() != 2 || a.size(0) != static_cast<int64_t>(best.tokens.size()) || a.size(1) != n)
        throw ModelError("the search returned attention rows that do not match the caption and the " +
                         std::to_string(rows) + "x" + std::to_string(cols) + " grid");
      const float* p = a.data_ptr<float>();
      for (int64_t t = 0; t < a.size(0); ++t) r.alpha.emplace_back(p + t * n, p + (t + 1) * n);
    }
    for (std::size_t k = 1; k < hyps[b].size(); ++k)
      r.alternatives.push_back({m.bundle.vocab.decode(hyps[b][k].tokens), hyps[b][k].score});
    if (m.options.samples_per_word > 0) {
      std::seed_seq seq{static_cast<std::uint64_t>(m.options.seed), static_cast<std::uint64_t>(r.index)};
      std::mt19937_64 rng(seq);
      for (const auto& row : r.alpha) r.sampled.push_back(draw_regions(row, m.options.samples_per_word, rng));
    }
  }
  return out;
}

}  // namespace

std::vector<ImageCaption> Captioner::caption_images(const std::vector<cv::Mat>& rgb, bool keep_images) {
  std::vector<std::size_t> indices(rgb.size());
  for (std::size_t i = 0; i < indices.size(); ++i) indices[i] = i;
  return caption_batch(*impl_, rgb, indices, keep_images);
}

namespace {

// A decoded batch handed from the reader thread to the model thread.
struct DecodedBatch {
  std::size_t first = 0;
  std::vector<fs::path> paths;
  std::vector<cv::Mat> images;       // the encoder's input: empty Mat where the image failed
  std::vector<cv::Mat> display;      // keep_images: the full-size image to draw on (JPEGs are read
                                     // smaller for the encoder); empty Mat = the same as images
  std::vector<std::string> errors;   // "" where it was read
};

}  // namespace

Captioner::FileSummary Captioner::caption_files(const std::vector<fs::path>& paths,
                                                const std::function<void(ImageCaption&)>& sink, bool keep_images,
                                                const std::function<void(std::size_t, std::size_t)>& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  FileSummary summary;
  summary.images = paths.size();
  const std::size_t batch = static_cast<std::size_t>(impl_->options.batch_size);
  const std::size_t batches = (paths.size() + batch - 1) / batch;
  const ImageLimits display_limits = impl_->options.limits;
  const ImageLimits limits = impl_->encoder->read_limits(display_limits);  // as prepare reads them
  const double encode0 = impl_->encode_seconds, search0 = impl_->search_seconds;

  // Bounded queue: the reader stays at most two batches ahead of the model.
  constexpr std::size_t kQueueCapacity = 2;
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<DecodedBatch> queue;
  bool stop = false;
  std::exception_ptr reader_error;

  std::thread reader([&] {
    try {
      for (std::size_t k = 0; k < batches; ++k) {
        DecodedBatch db;
        db.first = k * batch;
        const std::size_t end = std::min(paths.size(), db.first + batch);
        for (std::size_t i = db.first; i < end; ++i) {
          db.paths.push_back(paths[i]);
          cv::Mat image, full;
          std::string error;
          try {
            image = read_image_rgb(paths[i], limits);
            if (keep_images && limits.min_side > 0) {
              full = read_image_rgb(paths[i], display_limits);
              if (full.size() == image.size()) full.release();  // read at full size already
            }
          } catch (const InputError& e) {
            error = e.what();
          } catch (const std::exception& e) {  // cv::Exception, out of memory for one image
            error = paths[i].string() + ": " + exception_text(e);
          }
          if (!error.empty()) image.release(), full.release();
          db.images.push_back(image);
          db.display.push_back(full);
          db.errors.push_back(error);
          std::lock_guard<std::mutex> lock(mutex);
          if (stop) return;
        }
        std::unique_lock<std::mutex> lock(mutex);
        changed.wait(lock, [&] { return stop || queue.size() < kQueueCapacity; });
        if (stop) return;
        queue.push_back(std::move(db));
        changed.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      reader_error = std::current_exception();
      changed.notify_all();
    }
  });
  // Whatever happens below, the reader is stopped and joined before this function returns.
  struct Joiner {
    std::thread& t;
    std::mutex& m;
    std::condition_variable& c;
    bool& stop;
    ~Joiner() {
      {
        std::lock_guard<std::mutex> lock(m);
        stop = true;
      }
      c.notify_all();
      if (t.joinable()) t.join();
    }
  } joiner{reader, mutex, changed, stop};

  for (std::size_t k = 0; k < batches; ++k) {
    DecodedBatch db;
    {
      const auto w0 = std::chrono::steady_clock::now();
      std::unique_lock<std::mutex> lock(mutex);
      changed.wait(lock, [&] { return !queue.empty() || reader_error; });
      if (queue.empty()) std::rethrow_exception(reader_error);
      db = std::move(queue.front());
      queue.pop_front();
      changed.notify_all();
      summary.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    }
    std::vector<cv::Mat> good;
    std::vector<std::size_t> where, indices;
    for (std::size_t i = 0; i < db.paths.size(); ++i) {
      if (db.errors[i].empty()) {
        good.push_back(db.images[i]);
        where.push_back(i);
        indices.push_back(db.first + i);
      }
    }
    std::vector<ImageCaption> results(db.paths.size());
    if (!good.empty()) {
      std::vector<ImageCaption> captioned = caption_batch(*impl_, good, indices, keep_images);
      for (std::size_t j = 0; j < where.size(); ++j) {
        results[where[j]] = std::move(captioned[j]);
        if (keep_images && !db.display[where[j]].empty()) results[where[j]].rgb = db.display[where[j]];
      }
    }
    for (std::size_t i = 0; i < db.paths.size(); ++i) {
      ImageCaption& r = results[i];
      r.index = db.first + i;
      r.path = db.paths[i];
      if (!db.errors[i].empty()) {
        r.error = db.errors[i];
        ++summary.failed;
      }
      sink(r);
      r.rgb.release();
    }
    if (progress) progress(std::min(paths.size(), db.first + db.paths.size()), paths.size());
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  summary.encode_seconds = impl_->encode_seconds - encode0;
  summary.search_seconds = impl_->search_seconds - search0;
  return summary;
}

}  // namespace satcap
