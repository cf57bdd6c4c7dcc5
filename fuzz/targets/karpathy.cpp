// Karpathy split files (dataset_coco.json, dataset_flickr8k.json, ...: lib/src/data/dataset.cpp's
// load_karpathy through json_stream), read as such and through format detection.
#include "fuzz_target.h"
#include "satcap/data/dataset.h"

SATCAP_FUZZ_TARGET(karpathy) {
  using namespace satcap;
  const std::string path = fuzz::write_input("dataset.json", data, size).string();
  DatasetOptions options;
  options.check_images = false;
  options.format = DatasetFormat::karpathy;
  const Dataset d = load_dataset(path, options);
  for (const auto& image : d.images)
    for (const auto& c : image.captions) (void)c.tokens();
  options.format = DatasetFormat::detect;  // the same bytes as the command line's --format auto reads them
  (void)load_dataset(path, options);
}
