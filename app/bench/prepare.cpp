// The encoder pipeline (measure.h): prepare (read, decode, resize, forward, store) on real
// photographs against the bare network forward over as many images, and the reading stage alone,
// which on a CPU shares the cores with the forward and so bounds prepare.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cstdio>
#include <iomanip>
#include <memory>

#include "bench/measure.h"
#include "satcap/data/dataset.h"
#include "satcap/data/image.h"
#include "satcap/data/image_batch.h"
#include "satcap/data/prepare.h"
#include "satcap/model/encoder.h"
#include "satcap/runtime/atomic_file.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/runtime.h"

namespace fs = std::filesystem;

namespace satcap::bench {

namespace {

const char* kPhotoDir = "/usr/share/darknet/data";

// A COCO captions dataset of `count` real photographs (copies of darknet's sample JPEGs, 500-800
// pixels wide) in `dir`: what prepare meets on COCO (JPEG decoding and resizing included).
// Returns false when the photographs are missing.
bool make_photo_dataset(const fs::path& dir, int64_t count) {
  std::vector<fs::path> photos;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(kPhotoDir, ec)) {
    if (e.path().extension() == ".jpg") photos.push_back(e.path());
  }
  if (photos.empty()) return false;
  std::sort(photos.begin(), photos.end());
  fs::create_directories(dir);
  json images = json::array(), annotations = json::array();
  for (int64_t i = 0; i < count; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "photo%05lld.jpg", static_cast<long long>(i));
    fs::copy_file(photos[static_cast<size_t>(i) % photos.size()], dir / name, fs::copy_options::overwrite_existing);
    images.push_back({{"id", i + 1}, {"file_name", name}});
    annotations.push_back({{"id", i + 1}, {"image_id", i + 1}, {"caption", "a photograph"}});
  }
  write_file_atomic(dir / "captions.json", json{{"images", images}, {"annotations", annotations}}.dump());
  return true;
}

json measure_prepare(const BenchRun& run) {
  const Plan& plan = run.plan;
  const c10::Device& device = run.device;
  const fs::path data_dir = run.work / "prepare-photos";
  if (!make_photo_dataset(data_dir, plan.prepare_images)) {
    return {{"error", std::string("no sample photographs in ") + kPhotoDir + " (apt-get install darknet)"}};
  }
  EncoderOptions eo;  // the default encoder
  std::unique_ptr<Encoder> encoder;
  try {
    encoder = load_encoder(eo);
  } catch (const Error& e) {
    return {{"error", std::string("encoder: ") + e.what()}};
  }
  encoder->to(device);
  encoder->train(false);
  Dataset dataset = load_dataset(data_dir.string());
  const int64_t B = plan.prepare_batch, N = static_cast<int64_t>(dataset.images.size());

  // The network's input shape, from one preprocessed image.
  at::Tensor one = encoder->preprocess({read_image_rgb(dataset.images.front().path)});
  auto input_shape = one.sizes().vec();
  input_shape[0] = B;
  at::Tensor x = at::rand(input_shape, one.options());
  {
    at::NoGradGuard no_grad;
    encoder->forward(x);  // warm-up
  }

  // prepare: the whole pipeline into a fresh store.
  PrepareOptions po;
  po.batch_size = static_cast<int>(B);
  const fs::path store = run.work / "prepare-store";
  fs::remove_all(store);
  PrepareSummary summary;
  const double prepare_seconds =
      timed(device, [&] { summary = prepare_features(dataset, *encoder, store.string(), po); }).seconds;

  // The bare forward over as many images, same batch size, same (no-grad) mode as encode().
  const double forward_seconds = timed(device, [&] {
                                   at::NoGradGuard no_grad;
                                   for (int64_t done = 0; done < N; done += B) {
                                     at::Tensor input = done + B <= N ? x : x.slice(0, 0, N - done);
                                     encoder->forward(input);
                                   }
                                 }).seconds;
  fs::remove_all(store);

  // Reading, decoding and preprocessing alone, prepare's own reading stage batch by batch on as
  // many threads as its readers: the CPU work prepare does beside the forward. On a CPU device both
  // share the same cores, so prepare cannot beat forward + decode time (the bound reported below),
  // however they overlap.
  const ImageLimits limits = encoder->read_limits(po.limits);
  const int64_t readers = std::max<int64_t>(1, available_cores());
  std::vector<fs::path> paths;
  for (const auto& image : dataset.images) paths.push_back(image.path);
  const double decode_seconds = timed(device, [&] {
                                  for (int64_t done = 0; done < N; done += B) {
                                    std::vector<std::size_t> rows;
                                    for (int64_t i = done; i < std::min(N, done + B); ++i)
                                      rows.push_back(static_cast<std::size_t>(i));
                                    decode_image_batch(rows, paths, limits, *encoder, static_cast<std::size_t>(readers));
                                  }
                                }).seconds;
  const double prepare_rate = static_cast<double>(summary.encoded) / prepare_seconds;
  const double forward_rate = static_cast<double>(N) / forward_seconds;
  const double decode_rate = static_cast<double>(N) / decode_seconds;
  // Forward and decoding back to back on the same cores: images / (forward time + decode time).
  const double cpu_bound = device.is_cpu() ? decode_rate / (decode_rate + forward_rate) : 1.0;
  run.log("  prepare ", std::fixed, std::setprecision(1), prepare_rate, " images/s, bare forward ", forward_rate,
          " images/s (", encoder->identity(), ")");
  return {{"encoder", encoder->identity()},
          {"images", N},
          {"batch", B},
          {"input", input_shape},
          {"source", std::string(kPhotoDir) + " JPEGs, copied"},
          {"prepare_seconds", prepare_seconds},
          {"prepare_images_per_s", prepare_rate},
          {"forward_seconds", forward_seconds},
          {"forward_images_per_s", forward_rate},
          {"decode_threads", readers},
          {"decode_seconds", decode_seconds},
          {"decode_images_per_s", decode_rate},
          {"bound_vs_forward", cpu_bound},
          {"failed", summary.failed}};
}

}  // namespace

void bench_prepare(const BenchRun& run, json& report) {
  run.log("encoder: prepare vs bare forward, ", run.plan.prepare_images, " photographs, batch ",
          run.plan.prepare_batch, " ...");
  json m = measure_prepare(run);
  if (m.contains("error")) run.log("  ", m["error"].get<std::string>());
  report["prepare"] = m;
  report["prepare_images_per_s"] = field_or_null(m, "prepare_images_per_s");
  report["forward_images_per_s"] = field_or_null(m, "forward_images_per_s");
  report["prepare_vs_forward"] = ratio(number_or(m, "prepare_images_per_s"), number_or(m, "forward_images_per_s"));
  report["prepare_bound_vs_forward"] = field_or_null(m, "bound_vs_forward");
}

}  // namespace satcap::bench
