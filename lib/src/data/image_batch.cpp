// The reading stage of prepare and of the benchmark's prepare measurement (image_batch.h).
#include "satcap/data/image_batch.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <future>

#include "satcap/model/encoder.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/torch_error.h"

namespace fs = std::filesystem;

namespace satcap {

namespace {

// One image: read, decode, and preprocess (resize, normalise) into [1, 3, H, W]. An empty tensor
// and `failure` set when the image cannot be used.
at::Tensor load_one(const fs::path& path, const ImageLimits& limits, const Encoder& encoder, std::string& failure) {
  try {
    return encoder.preprocess({read_image_rgb(path, limits)});
  } catch (const Error& e) {
    failure = e.what();
  } catch (const std::exception& e) {  // OpenCV's own exceptions on broken files
    failure = path.string() + ": " + exception_text(e);
  }
  return {};
}

}  // namespace

// The batch's images on a few worker threads (image i on worker i mod W), gathered in row order,
// so the result does not depend on the number of workers. preprocess works on one image at a
// time (it is elementwise per image): the same bytes as preprocessing the whole batch at once.
DecodedBatch decode_image_batch(const std::vector<std::size_t>& rows, const std::vector<fs::path>& paths,
                          const ImageLimits& limits, const Encoder& encoder, std::size_t workers) {
  const std::size_t count = rows.size();
  std::vector<at::Tensor> inputs(count);
  std::vector<std::string> failures(count);
  auto work = [&](std::size_t w, std::size_t stride) {
    at::NoGradGuard no_grad;
    for (std::size_t i = w; i < count; i += stride) inputs[i] = load_one(paths[rows[i]], limits, encoder, failures[i]);
  };
  workers = std::max<std::size_t>(1, std::min(workers, count));
  std::vector<std::future<void>> others;
  for (std::size_t w = 1; w < workers; ++w) others.push_back(std::async(std::launch::async, work, w, workers));
  work(0, workers);
  for (auto& f : others) f.get();  // load_one catches everything an image can throw
  DecodedBatch d;
  std::vector<at::Tensor> good;
  for (std::size_t i = 0; i < count; ++i) {
    if (inputs[i].defined()) {
      d.rows.push_back(rows[i]);
      good.push_back(inputs[i]);
    } else {
      d.failed_rows.push_back(rows[i]);
      d.failures.push_back(failures[i]);
    }
  }
  if (!good.empty()) d.input = good.size() == 1 ? good.front() : at::cat(good, 0);
  return d;
}

}  // namespace satcap
