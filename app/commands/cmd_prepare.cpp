// `satcap prepare`: encodes a dataset's images once into a feature store for training.
#include <iostream>
#include <memory>

#include "command.h"
#include "satcap/data/dataset.h"
#include "satcap/data/prepare.h"
#include "satcap/model/encoder.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/runtime.h"

namespace satcap::app {
namespace {

struct PrepareCommandOptions {
  std::string data;        // dataset file or folder
  std::string out;         // feature store folder
  DatasetOptions dataset;
  // --format by name: parsed into dataset.format once the command runs (after the prepare
  // options are checked), as the library's check of it was before.
  std::string format = enum_name(DatasetOptions{}.format);
  EncoderOptions encoder;
  PrepareOptions prepare;
};

const CommandRegistration registration{
    "prepare", "Encode a dataset's images once into a feature store (resumes an interrupted run)",
    [](CLI::App& sub) -> RunFunction {
      auto o = std::make_shared<PrepareCommandOptions>();
      sub.add_option("--data", o->data, "Dataset: a COCO captions file, a Karpathy split file, a Flickr8k token file, or a folder holding one")
          ->required();
      sub.add_option("--out", o->out, "Feature store folder (created; an interrupted store is resumed)")->required();
      sub.add_option("--encoder", o->encoder.source, "Embedded encoder name or TorchScript file")->capture_default_str();
      sub.add_option("--models-dir", o->encoder.models_dir, "Folder of the embedded encoders (\"\" = the repository's models/embedded)")
          ->capture_default_str();
      sub.add_flag("--fp16", o->prepare.fp16, "Store features as float16 (half the disk)")->capture_default_str();
      sub.add_option("--batch", o->prepare.batch_size, "Images per encoder batch")->capture_default_str();
      sub.add_option("--split", o->prepare.split, "Split to prepare (train, val, test, ... or all)")->capture_default_str();
      sub.add_option("--format", o->format, "Dataset format: auto, coco, karpathy or flickr8k")->capture_default_str();
      sub.add_option("--images", o->dataset.image_root, "Image root folder (\"\" = detected beside the dataset file)")
          ->capture_default_str();
      sub.add_option("--split-file", o->dataset.split_file, "Karpathy split file giving COCO images their split")
          ->capture_default_str();
      sub.add_flag("--strict", o->prepare.strict, "Missing or unreadable images are errors instead of reported skips")
          ->capture_default_str();
      return [o] {
        const bool quiet = global_options().quiet;
        validate(o->prepare);
        o->dataset.format = parse_enum<DatasetFormat>(o->format, "--format");
        o->dataset.strict = o->prepare.strict;
        Dataset dataset = load_dataset(o->data, o->dataset);
        for (const auto& w : dataset.warnings) std::cerr << "warning: " << w << "\n";
        auto encoder = load_encoder(o->encoder);
        encoder->to(parse_device(global_options().device));
        if (!quiet) {
          o->prepare.progress = [](std::size_t done, std::size_t total) {
            std::cerr << "\rprepare: " << done << "/" << total << " images" << std::flush;
          };
        }
        PrepareSummary s = prepare_features(dataset, *encoder, o->out, o->prepare);
        if (!quiet) std::cerr << "\n";
        for (const auto& f : s.failures) std::cerr << "error: " << f << "\n";
        std::cout << o->out << ": " << s.images << " images (" << s.already << " already stored, "
                  << (s.changed > 0 ? std::to_string(s.changed) + " changed since they were stored, " : "") << s.encoded
                  << " encoded, " << s.failed << " failed) in " << s.seconds << " s; encoder " << encoder->identity() << "\n";
        return s.failed > 0 ? static_cast<int>(ExitCode::partial) : 0;
      };
    }};

}  // namespace
}  // namespace satcap::app
