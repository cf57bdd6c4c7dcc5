// The Flickr8k token file (lib/src/data/dataset.cpp's load_flickr8k) with the split lists read
// beside it. Input: Flickr8k.token.txt [NUL trainImages [NUL devImages [NUL testImages]]].
#include "fuzz_target.h"
#include "satcap/data/dataset.h"

SATCAP_FUZZ_TARGET(flickr8k) {
  using namespace satcap;
  const auto parts = fuzz::sections(data, size, 4);
  const auto dir = fuzz::fresh_folder("flickr8k");
  const char* lists[] = {"Flickr_8k.trainImages.txt", "Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt"};
  for (int i = 0; i < 3; ++i)
    if (!parts[i + 1].empty()) fuzz::write_input("flickr8k/" + std::string(lists[i]), parts[i + 1]);
  DatasetOptions options;
  options.check_images = false;
  const Dataset d = load_dataset(fuzz::write_input("flickr8k/Flickr8k.token.txt", parts[0]).string(), options);
  for (const auto& image : d.images)
    for (const auto& c : image.captions) (void)c.tokens();
}
