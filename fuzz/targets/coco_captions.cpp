// COCO caption annotations (lib/src/data/dataset.cpp's load_coco through json_stream), with an
// optional Karpathy split file applied to them (DatasetOptions::split_file).
// Input: captions JSON [NUL Karpathy split JSON].
#include "fuzz_target.h"
#include "satcap/data/dataset.h"

SATCAP_FUZZ_TARGET(coco_captions) {
  using namespace satcap;
  const auto parts = fuzz::sections(data, size, 2);
  DatasetOptions options;
  options.format = DatasetFormat::coco;
  options.check_images = false;
  if (!parts[1].empty()) options.split_file = fuzz::write_input("dataset_coco.json", parts[1]).string();
  const Dataset d = load_dataset(fuzz::write_input("captions_val2014.json", parts[0]).string(), options);
  for (const auto& image : d.images)
    for (const auto& c : image.captions) (void)c.tokens();
  (void)d.references("all");
}
