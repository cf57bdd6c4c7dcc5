// Image files (lib/src/data/image.cpp's read_image_rgb): satcap's own header checks of JPEG, PNG,
// BMP, WebP and TIFF, then its libjpeg decoder (jpeg_decode.cpp) or OpenCV's, and the conversion to
// 8-bit RGB. Odd-sized inputs decode JPEG at full size, even-sized ones DCT-scaled for a 224-pixel
// encoder input, as training and captioning read them.
#include "fuzz_target.h"
#include "satcap/data/image.h"

SATCAP_FUZZ_TARGET(image) {
  using namespace satcap;
  ImageLimits limits;
  limits.max_pixels = 4'000'000;  // a photograph; larger only slows the fuzzer (the limit itself is exercised)
  limits.min_side = size % 2 ? 0 : 224;
  (void)read_image_rgb(fuzz::write_input("image", data, size), limits);
}
