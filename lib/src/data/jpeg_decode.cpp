#include "data/jpeg_decode.h"

#include <algorithm>
#include <csetjmp>
#include <cstdio>

#include <jpeglib.h>

namespace satcap::detail {
namespace {

struct ErrorManager {
  jpeg_error_mgr pub;  // first: libjpeg casts the j_common_ptr's err to this
  std::jmp_buf jump;
  std::string* messages;
};

void append(j_common_ptr cinfo) {
  char text[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, text);
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  if (!err->messages->empty()) *err->messages += "; ";
  *err->messages += text;
}

void on_error(j_common_ptr cinfo) {
  append(cinfo);
  std::longjmp(reinterpret_cast<ErrorManager*>(cinfo->err)->jump, 1);
}

// Warnings (level -1: corrupt data, premature end) are kept, as OpenCV's libjpeg would print them;
// trace messages (level >= 0) are dropped, as libjpeg's default does.
void on_message(j_common_ptr cinfo, int level) {
  if (level < 0) {
    if (cinfo->err->num_warnings == 0 || cinfo->err->trace_level >= 3) append(cinfo);
    cinfo->err->num_warnings++;
  }
}

}  // namespace

JpegDecoded decode_jpeg(const std::vector<std::uint8_t>& data, int min_side) {
  JpegDecoded out;
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = on_error;
  err.pub.emit_message = on_message;
  err.messages = &out.messages;
  // Everything below that libjpeg can fail in jumps back here; only PODs and `out` live across it.
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    out.image.release();
    return out;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data.data(), static_cast<unsigned long>(data.size()));
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK ||
      (cinfo.num_components != 1 && cinfo.num_components != 3)) {
    jpeg_destroy_decompress(&cinfo);
    out.handled = false;
    return out;
  }
  const bool grey = cinfo.num_components == 1;
  cinfo.out_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
  if (min_side > 0) {
    const std::int64_t shorter = std::min<std::int64_t>(cinfo.image_width, cinfo.image_height);
    for (int d : {8, 4, 2}) {
      if (scaled_size(shorter, d) >= min_side) {
        out.scale_denom = d;
        break;
      }
    }
  }
  cinfo.scale_num = 1;
  cinfo.scale_denom = static_cast<unsigned int>(out.scale_denom);
  jpeg_start_decompress(&cinfo);
  // Into `out`, which outlives the setjmp above (no C++ object may be jumped over).
  out.image.create(static_cast<int>(cinfo.output_height), static_cast<int>(cinfo.output_width), grey ? CV_8UC1 : CV_8UC3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.image.ptr<JSAMPLE>(static_cast<int>(cinfo.output_scanline));
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return out;
}

}  // namespace satcap::detail
