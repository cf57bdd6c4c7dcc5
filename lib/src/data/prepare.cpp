#include "satcap/data/prepare.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <map>
#include <optional>
#include <unordered_set>

#include "satcap/data/dataset.h"
#include "satcap/data/feature_store.h"
#include "satcap/data/image.h"
#include "satcap/data/image_batch.h"
#include "satcap/model/encoder.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/runtime.h"

namespace fs = std::filesystem;

namespace satcap {

void validate(const PrepareOptions& options) {
  if (options.batch_size < 1) throw UsageError("--batch must be at least 1 (got " + std::to_string(options.batch_size) + ")");
  if (options.split.empty()) throw UsageError("--split must name a split or be 'all'");
}

PrepareSummary prepare_features(const Dataset& dataset, Encoder& encoder, const std::string& store_dir,
                                const PrepareOptions& options) {
  validate(options);
  const auto start = std::chrono::steady_clock::now();
  // One row per image file of the split (two ids naming the same file share it).
  FeatureStoreSpec spec;
  std::vector<fs::path> paths;
  std::unordered_set<std::string> seen;
  for (const ImageEntry* image : dataset.split(options.split)) {
    if (seen.insert(image->key).second) {
      spec.keys.push_back(image->key);
      paths.push_back(image->path);
    }
  }
  if (spec.keys.empty()) {
    throw InputError(dataset.source + ": no images in split '" + options.split + "' to prepare");
  }
  spec.encoder_identity = encoder.identity();
  spec.encoder_description = encoder.describe();
  spec.regions = encoder.regions();
  spec.dim = encoder.dim();
  spec.dtype = options.fp16 ? FeatureDtype::float16 : FeatureDtype::float32;
  FeatureStore store = FeatureStore::create_or_resume(store_dir, spec);

  PrepareSummary summary;
  summary.images = spec.keys.size();
  // Rows written before are kept only for the image they were computed from: an image that
  // changed since (or another data set under the same names) is encoded again.
  std::vector<std::pair<std::size_t, fs::path>> written;
  for (std::size_t r = 0; r < store.size(); ++r)
    if (store.state(r) == RowState::written) written.emplace_back(r, paths[r]);
  const ChangedSources changed = find_changed_sources(store, written);
  for (std::size_t i : changed.same_content) store.restamp(written[i].first, stamp_file(written[i].second));
  store.commit();
  std::vector<std::size_t> stale;
  for (std::size_t i : changed.changed) stale.push_back(written[i].first);
  store.reset(stale);
  summary.changed = stale.size();
  std::vector<std::size_t> todo;
  for (std::size_t r = 0; r < store.size(); ++r) {
    if (store.state(r) == RowState::written) ++summary.already;
    else todo.push_back(r);  // empty, changed, or failed before (retried: the file may be fixed now)
  }
  std::vector<std::vector<std::size_t>> batches;
  for (std::size_t i = 0; i < todo.size(); i += static_cast<std::size_t>(options.batch_size)) {
    batches.emplace_back(todo.begin() + static_cast<std::ptrdiff_t>(i),
                         todo.begin() + static_cast<std::ptrdiff_t>(std::min(todo.size(), i + options.batch_size)));
  }
  // Reading, decoding and resizing run on worker threads (one per core), one batch ahead.
  const std::size_t workers = static_cast<std::size_t>(std::max(1, available_cores()));
  const ImageLimits limits = encoder.read_limits(options.limits);  // as caption reads the images
  // Each image's stamp (size, time, SHA-256) is taken just before it is decoded, on the same thread.
  struct StampedBatch {
    std::map<std::size_t, FileStamp> stamps;
    DecodedBatch decoded;
  };
  auto launch = [&](std::size_t b) {
    return std::async(std::launch::async, [&, b] {
      StampedBatch s;
      for (std::size_t row : batches[b]) {
        try {
          s.stamps[row] = stamp_file(paths[row]);
        } catch (const InputError&) {  // the decoder reports it
        }
      }
      s.decoded = decode_image_batch(batches[b], paths, limits, encoder, workers);
      return s;
    });
  };
  std::future<StampedBatch> next;
  if (!batches.empty()) next = launch(0);
  at::NoGradGuard no_grad;
  encoder.train(false);
  std::size_t done = 0;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    StampedBatch stamped = next.get();
    DecodedBatch& d = stamped.decoded;
    if (options.strict && !d.failures.empty()) {
      store.commit();
      if (next.valid()) next.wait();
      throw InputError(d.failures.front());
    }
    for (std::size_t i = 0; i < d.failed_rows.size(); ++i) {
      store.mark_failed(d.failed_rows[i]);
      summary.failures.push_back(d.failures[i]);
    }
    if (!d.rows.empty()) {
      at::Tensor features;
      try {
        features = encoder.forward(d.input);  // [B, n, D]
      } catch (...) {
        if (next.valid()) next.wait();
        throw;
      }
      if (features.dim() != 3 || features.size(0) != static_cast<std::int64_t>(d.rows.size()) ||
          features.size(1) != spec.regions || features.size(2) != spec.dim) {
        if (next.valid()) next.wait();
        throw ModelError("encoder '" + spec.encoder_identity + "' returned features of shape " + c10::str(features.sizes()) +
                         " for " + std::to_string(d.rows.size()) + " images, expected [" + std::to_string(d.rows.size()) +
                         ", " + std::to_string(spec.regions) + ", " + std::to_string(spec.dim) + "]");
      }
      features = features.to(at::kCPU, at::kFloat).contiguous();
      const float* base = features.data_ptr<float>();
      const std::size_t row_values = static_cast<std::size_t>(spec.regions) * static_cast<std::size_t>(spec.dim);
      for (std::size_t i = 0; i < d.rows.size(); ++i) store.write(d.rows[i], base + i * row_values, stamped.stamps[d.rows[i]]);
      summary.encoded += d.rows.size();
    }
    // The next batch decodes while this one is made durable (fsync waits on the disk, not the CPU),
    // not while the encoder runs: decoding next to the network's OpenMP team on the same cores
    // stalls the team at every barrier (measured: prepare at 0.67x the bare forward overlapped).
    if (b + 1 < batches.size()) next = launch(b + 1);
    store.commit();  // this batch is durable: an interrupted run resumes after it
    done += batches[b].size();
    if (options.progress) options.progress(summary.already + done, summary.images);
  }
  summary.failed = summary.failures.size();
  store.finalize();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace satcap
