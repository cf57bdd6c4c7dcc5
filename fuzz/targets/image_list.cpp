// An image list file (`satcap caption list.txt`, `satcap encode list.txt`: lib/src/data/image.cpp's
// expand_image_inputs).
#include "fuzz_target.h"
#include "satcap/data/image.h"

SATCAP_FUZZ_TARGET(image_list) {
  using namespace satcap;
  (void)expand_image_inputs({fuzz::write_input("list.txt", data, size).string()});
}
