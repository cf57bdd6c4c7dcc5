// `satcap scenes`: generates a synthetic COCO-style captioning data set with known ground truth.
#include <iostream>
#include <memory>

#include "command.h"
#include "options_cli.h"
#include "satcap/data/scenes.h"

namespace satcap::app {
namespace {

const CommandRegistration registration{
    "scenes", "Generate a synthetic COCO-style data set (shapes or Fashion-MNIST objects, 5 captions each)",
    [](CLI::App& sub) -> RunFunction {
      auto opts = std::make_shared<SceneOptions>();
      sub.add_option("--out", opts->out_dir, "Output folder (captions.json, instances.json, dataset.json, images/)")
          ->required();
      sub.add_option("--images", opts->images, "Number of images")->capture_default_str();
      sub.add_option("--seed", opts->seed, "Random seed (same seed, same bytes)")->capture_default_str();
      add_enum_option(sub, "--objects", opts->objects, "Object kind: shapes or fashion");
      sub.add_option("--size", opts->size, "Image width and height in pixels")->capture_default_str();
      sub.add_option("--fashion-dir", opts->fashion_dir, "Folder with Fashion-MNIST's *-idx*-ubyte.gz files")
          ->capture_default_str();
      sub.add_flag("--force", opts->force, "Write into a non-empty output folder")->capture_default_str();
      return [opts] {
        opts->threads = global_options().threads;
        const bool quiet = global_options().quiet;
        const int total = opts->images;
        ScenesSummary s = generate_scenes(*opts, [&](int done) {
          if (!quiet) std::cerr << "\rscenes: " << done << "/" << total << " images" << std::flush;
        });
        if (!quiet) std::cerr << "\n";
        std::cout << "wrote " << s.images << " images, " << s.objects << " objects, " << s.captions << " captions to "
                  << opts->out_dir << " in " << s.seconds << " s\n";
        return 0;
      };
    }};

}  // namespace
}  // namespace satcap::app
