// satcap's own JPEG decoder (lib/src/data/jpeg_decode.cpp: libjpeg with its error and warning
// handlers, DCT scaling) on any bytes, without image.cpp's header checks in front of it. Odd-sized
// inputs decode at full size, even-sized ones scaled for a 224-pixel encoder input.
#include "data/jpeg_decode.h"
#include "fuzz_target.h"

SATCAP_FUZZ_TARGET(jpeg_decode) {
  const std::vector<std::uint8_t> bytes(data, data + size);
  (void)satcap::detail::decode_jpeg(bytes, size % 2 ? 0 : 224);
}
