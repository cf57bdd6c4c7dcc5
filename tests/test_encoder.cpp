// The encoder: parity of the imported networks with TensorFlow.js, region shapes, trainable
// blocks, TorchScript encoders, and `satcap encode` end to end.
#include "testing.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "model/encoder_impl.h"
#include "satcap/data/encoded_features.h"
#include "satcap/data/image.h"
#include "satcap/model/encoder.h"
#include "satcap/model/keras_graph.h"
#include "satcap/model/tfjs_model.h"
#include "satcap/runtime/error.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace satcap;

namespace {

const std::vector<std::string> kPhotos{"dog", "horses", "person", "eagle"};

fs::path photo(const std::string& name) { return fs::path("/usr/share/darknet/data") / (name + ".jpg"); }

// Runs the embedded network NAME with its own 5-class head on the photos, in C++ and in
// TensorFlow.js (tools/node/tfjs_reference.js) on the same preprocessed input; returns the
// largest absolute difference of the class probabilities per photo.
std::vector<double> parity(const std::string& name, const std::vector<std::string>& photos) {
  EncoderOptions options;
  options.source = name;
  auto encoder = load_encoder(options);
  std::vector<cv::Mat> images;
  for (const auto& p : photos) images.push_back(read_image_rgb(photo(p)));
  at::Tensor input = encoder->preprocess(images);  // [B, 3, H, W]
  REQUIRE(input.size(0) == static_cast<std::int64_t>(photos.size()));
  REQUIRE(input.min().item<float>() >= 0.0f);
  REQUIRE(input.max().item<float>() <= 1.0f);

  const fs::path dir = fresh_temp_dir("encoder_parity_" + name);
  const fs::path file = dir / "input.f32";
  at::Tensor nhwc = input.permute({0, 2, 3, 1}).contiguous();
  {
    std::ofstream out(file, std::ios::binary);
    out.write(reinterpret_cast<const char*>(nhwc.data_ptr<float>()), nhwc.numel() * sizeof(float));
  }
  const std::string cmd = "node '" + (source_dir() / "tools/node/tfjs_reference.js").string() + "' " + name + " '" + file.string() +
                          "' " + std::to_string(input.size(0)) + " " + std::to_string(input.size(2)) + " " +
                          std::to_string(input.size(3)) + " 2>/dev/null";
  const std::string text = shell_output(cmd);
  INFO("tfjs_reference.js printed: " << text.substr(0, 300));
  auto reference = nlohmann::json::parse(text);
  REQUIRE(reference.at("backend") == "cpu");

  TfjsModel model = load_tfjs_model(source_dir() / "models" / "embedded" / name);
  KerasGraph graph(model);
  at::NoGradGuard no_grad;
  at::Tensor probs = graph.run(input, graph.output_layers())[0];  // [B, 5]
  REQUIRE((probs.sizes() == at::IntArrayRef{input.size(0), 5}));
  // Folding BatchNormalization into the convolutions (what the encoder does) keeps the result.
  REQUIRE(graph.fold_batch_norms() > 0);
  at::Tensor folded = graph.run(input, graph.output_layers())[0];
  CHECK(at::allclose(folded, probs, 0, 1e-5));
  std::vector<double> diffs;
  for (std::int64_t b = 0; b < probs.size(0); ++b) {
    auto ref = reference.at("output").at(b).get<std::vector<double>>();
    REQUIRE(ref.size() == 5);
    double sum = 0, diff = 0;
    for (int k = 0; k < 5; ++k) {
      diff = std::max(diff, std::abs(probs[b][k].item<double>() - ref[k]));
      sum += ref[k];
    }
    CHECK(sum == Approx(1.0).margin(1e-4));  // really probabilities
    diffs.push_back(diff);
  }
  return diffs;
}

}  // namespace

TEST_CASE("mobilenet_v2 with its head matches TensorFlow.js on photographs", "[encoder]") {
  auto diffs = parity("mobilenet_v2", kPhotos);
  for (std::size_t i = 0; i < diffs.size(); ++i) {
    std::cout << "parity mobilenet_v2 " << kPhotos[i] << ": max abs diff " << diffs[i] << "\n";
    CHECK(diffs[i] < 1e-4);
  }
}

// One photograph: TensorFlow.js's pure-JS backend needs about 10 s of CPU per InceptionV3 image.
TEST_CASE("the graph overwrites only maps no one else reads: inputs and kept outputs stay intact", "[encoder]") {
  // Activations run in place on a map whose only reader they are (one pass instead of two). Asking
  // for a map and the activation that reads it, or for the input's first layer, must not let that
  // shortcut overwrite them.
  TfjsModel model = load_tfjs_model(source_dir() / "models" / "embedded" / "mobilenet_v2");
  KerasGraph graph(model);
  at::NoGradGuard no_grad;
  at::manual_seed(3);
  const at::Tensor input = at::rand({2, 3, 96, 96});
  const at::Tensor input_copy = input.clone();
  auto both = graph.run(input, {"block_3_expand_BN", "block_3_expand_relu", "Conv1_pad"});
  CHECK(at::equal(input, input_copy));
  auto bn = graph.run(input, {"block_3_expand_BN"})[0];
  auto relu = graph.run(input, {"block_3_expand_relu"})[0];
  CHECK(at::equal(both[0], bn));  // not clamped by the ReLU6 that reads it
  CHECK(at::equal(both[1], relu));
  CHECK(at::equal(relu, at::clamp(bn, 0, 6)));
  CHECK(bn.min().item<float>() < 0);  // the test means something: the ReLU6 changes this map
  CHECK(at::equal(both[2].narrow(2, 0, 96).narrow(3, 0, 96), input));  // Conv1_pad pads after the image
  CHECK(at::equal(input, input_copy));
}

TEST_CASE("inception_v3 with its head matches TensorFlow.js on a photograph", "[encoder]") {
  const std::vector<std::string> photos{"person"};
  auto diffs = parity("inception_v3", photos);
  for (std::size_t i = 0; i < diffs.size(); ++i) {
    std::cout << "parity inception_v3 " << photos[i] << ": max abs diff " << diffs[i] << "\n";
    CHECK(diffs[i] < 1e-4);
  }
}

TEST_CASE("embedded encoders give [B, n, D] regions of the configured grid", "[encoder]") {
  std::vector<cv::Mat> images{read_image_rgb(photo("dog")), read_image_rgb(photo("eagle"))};
  EncoderOptions options;
  auto encoder = load_encoder(options);
  CHECK(encoder->grid_rows() == 14);
  CHECK(encoder->dim() == 576);
  at::Tensor h = encoder->encode(images);
  CHECK((h.sizes() == at::IntArrayRef{2, 196, 576}));
  CHECK_FALSE(h.requires_grad());
  CHECK(encoder->trainable_parameters().empty());
  CHECK(h.min().item<float>() >= 0.0f);  // ReLU6 activations
  CHECK(h.max().item<float>() <= 6.0f);
  CHECK(!at::allclose(h[0], h[1]));      // different photos, different features
  auto d = encoder->describe();
  CHECK(d.at("identity") == encoder->identity());
  CHECK(d.at("feature_layer") == "block_13_expand_relu");
  CHECK(d.at("pooling") == "none");
  CHECK(d.at("preprocessing").at("channel_order") == "RGB");
  CHECK(encoder->identity().find("fnv1a64:") != std::string::npos);

  SECTION("grid 7 pools the 14x14 map: each region is the mean of a 2x2 window") {
    options.grid = 7;
    auto small = load_encoder(options);
    at::Tensor h7 = small->encode(images);
    CHECK((h7.sizes() == at::IntArrayRef{2, 49, 576}));
    at::Tensor expected = h.view({2, 14, 14, 576}).slice(1, 0, 2).slice(2, 0, 2).mean({1, 2});
    CHECK(at::allclose(h7.select(1, 0), expected, 1e-5, 1e-5));
    CHECK(small->identity() != encoder->identity());
  }
  SECTION("trainable blocks get gradients, the rest stays frozen") {
    options.trainable_blocks = 2;
    auto tuned = load_encoder(options);
    auto params = tuned->trainable_parameters();
    REQUIRE(!params.empty());
    at::Tensor out = tuned->encode({images[0]});
    REQUIRE(out.requires_grad());
    out.sum().backward();
    for (auto& p : params) CHECK(p.grad().defined());
    CHECK(at::allclose(out, h.slice(0, 0, 1), 1e-5, 1e-5));  // same features either way
  }
  SECTION("bad options") {
    options.grid = 0;
    CHECK_THROWS_AS(load_encoder(options), UsageError);
    options.grid = 14;
    options.trainable_blocks = 1000;
    CHECK_THROWS_AS(load_encoder(options), UsageError);
    options.trainable_blocks = 0;
    options.source = "resnet";
    CHECK_THROWS_AS(load_encoder(options), UsageError);
  }
}

TEST_CASE("inception_v3 regions are mixed7 pooled from 17x17 to the grid", "[encoder]") {
  EncoderOptions options;
  options.source = "inception_v3";
  auto encoder = load_encoder(options);
  at::Tensor h = encoder->encode({read_image_rgb(photo("horses"))});
  CHECK((h.sizes() == at::IntArrayRef{1, 196, 768}));
  CHECK(encoder->describe().at("feature_map") == nlohmann::json::array({17, 17}));
  CHECK(encoder->describe().at("pooling") == "adaptive_avg");
}

TEST_CASE("a missing embedded encoder says how to import it", "[encoder]") {
  EncoderOptions options;
  options.models_dir = fresh_temp_dir("encoder_no_models").string();
  try {
    load_encoder(options);
    FAIL("no error");
  } catch (const ModelError& e) {
    CHECK(std::string(e.what()).find("import_models.sh") != std::string::npos);
  }
}

TEST_CASE("TorchScript encoders from tools/export_encoder.py", "[encoder]") {
  const fs::path dir = fresh_temp_dir("encoder_torchscript");
  const fs::path pt = dir / "r18.pt";
  const std::string cmd = "/usr/bin/python3 '" + (source_dir() / "tools/export_encoder.py").string() + "' '" + pt.string() +
                          "' --arch resnet18 --input-size 64 --grid 4 --weights none 2>&1";
  INFO(shell_output(cmd));
  REQUIRE(fs::exists(pt));
  REQUIRE(fs::exists(dir / "r18.json"));
  std::vector<cv::Mat> images{read_image_rgb(photo("dog")), read_image_rgb(photo("person"))};

  EncoderOptions options;
  options.source = pt.string();
  options.grid = 4;
  auto encoder = load_encoder(options);
  at::Tensor h = encoder->encode(images);
  CHECK((h.sizes() == at::IntArrayRef{2, 16, 512}));
  CHECK(encoder->dim() == 512);
  CHECK(encoder->describe().at("pooling") == "none");
  CHECK(encoder->trainable_parameters().empty());

  options.grid = 2;
  auto pooled = load_encoder(options);
  CHECK((pooled->encode(images).sizes() == at::IntArrayRef{2, 4, 512}));

  options.trainable_blocks = 1;
  auto tuned = load_encoder(options);
  CHECK(!tuned->trainable_parameters().empty());

  // Broken files: each error names the file at fault.
  options.trainable_blocks = 0;
  auto expect_model_error = [&](const std::string& source, const std::string& named) {
    options.source = source;
    try {
      load_encoder(options);
      FAIL("no error for " << source);
    } catch (const ModelError& e) {
      CHECK(std::string(e.what()).find(named) != std::string::npos);
    }
  };
  expect_model_error((dir / "missing.pt").string(), "missing.pt");
  write_text_file(dir / "garbage.pt", "not a zip archive");
  write_text_file(dir / "garbage.json", read_text_file(dir / "r18.json"));
  expect_model_error((dir / "garbage.pt").string(), "garbage.pt");
  fs::copy_file(pt, dir / "lonely.pt");
  expect_model_error((dir / "lonely.pt").string(), "lonely.json");
  auto meta = nlohmann::json::parse(read_text_file(dir / "r18.json"));
  meta["format_version"] = 99;
  fs::copy_file(pt, dir / "future.pt");
  write_text_file(dir / "future.json", meta.dump());
  expect_model_error((dir / "future.pt").string(), "newer");
}

TEST_CASE("satcap encode: JSON lines, features file, partial failures", "[encoder]") {
  const fs::path dir = fresh_temp_dir("encoder_cli");
  const std::string dog = photo("dog").string(), eagle = photo("eagle").string();
  const fs::path out = dir / "features.pt";

  auto r = run_satcap({"encode", dog, eagle, "--json", "--out", out.string(), "--batch", "1"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::istringstream lines(r.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    CHECK(j.at("image") == (n == 0 ? dog : eagle));
    CHECK(j.at("grid") == nlohmann::json::array({14, 14}));
    CHECK(j.at("regions") == 196);
    CHECK(j.at("dim") == 576);
    ++n;
  }
  CHECK(n == 2);
  auto stored = load_encoded_features(out);
  CHECK((stored.features.sizes() == at::IntArrayRef{2, 196, 576}));
  CHECK((stored.images == std::vector<std::string>{dog, eagle}));
  CHECK(stored.encoder.at("dim") == 576);
  // The stored features are what the library computes.
  auto encoder = load_encoder({});
  CHECK(at::allclose(stored.features[1], encoder->encode({read_image_rgb(eagle, encoder->read_limits())})[0], 1e-5, 1e-5));

  write_text_file(dir / "broken.jpg", "not a jpeg");
  r = run_satcap({"encode", dog, (dir / "broken.jpg").string(), (dir / "missing.jpg").string()});
  CHECK(r.exit_code == 6);
  CHECK(r.err.find("error: " + (dir / "broken.jpg").string()) != std::string::npos);
  CHECK(r.err.find("missing.jpg") != std::string::npos);
  CHECK(r.out.find(dog) != std::string::npos);

  r = run_satcap({"encode", (dir / "broken.jpg").string(), "--out", (dir / "none.pt").string()});
  CHECK(r.exit_code == 3);
  CHECK_FALSE(fs::exists(dir / "none.pt"));

  CHECK(run_satcap({"encode", dog, "--grid", "0"}).exit_code == 2);
  CHECK(run_satcap({"encode", dog, "--batch", "0"}).exit_code == 2);
  CHECK(run_satcap({"encode", dog, "--encoder", (dir / "nothing.pt").string()}).exit_code == 4);
  CHECK(run_satcap({"encode", dog, "--out", "/nonexistent-dir/f.pt"}).exit_code == 5);
}

TEST_CASE("CPU preprocessing equals the tensor expression for any size, both resize modes, RGB and BGR", "[encoder]") {
  cv::RNG rng(7);
  for (auto [h, w] : std::vector<std::pair<int, int>>{{288, 384}, {224, 224}, {100, 301}, {1, 7}, {500, 120}}) {
    cv::Mat img(h, w, CV_8UC3);
    rng.fill(img, cv::RNG::UNIFORM, 0, 256);
    for (bool align : {true, false}) {
      for (bool bgr : {false, true}) {
        INFO(h << "x" << w << (align ? " align_corners" : " half-pixel") << (bgr ? " BGR" : " RGB"));
        satcap::detail::Preprocessing p;
        p.height = 224;
        p.width = h == 224 ? 224 : 160;
        p.align_corners = align;
        p.bgr = bgr;
        p.mean = {0.485, 0.456, 0.406};
        p.std = {0.229, 0.224, 0.225};
        auto fast = satcap::detail::preprocess_images({img, img}, p, c10::Device(c10::kCPU));
        auto ref = satcap::detail::preprocess_images_reference({img, img}, p, c10::Device(c10::kCPU));
        REQUIRE(fast.sizes() == ref.sizes());
        INFO("max |difference| " << (fast - ref).abs().max().item<double>());
        // Within 1e-4 after normalising (3e-5 of the [0, 1] range before it): ATen's bilinear weights
        // differ from the float formula's in the fifth digit (seen: 0.283031 against 0.283020, the
        // exact weight being 0.283019). Same-size images (the scenes) come out equal.
        REQUIRE(at::allclose(fast, ref, 0, 1e-4));
        if (h == 224 && w == 224 && p.width == 224) REQUIRE(at::equal(fast, ref));
      }
    }
  }
}
