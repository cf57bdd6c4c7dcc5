#include "satcap/data/image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include "data/jpeg_decode.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"

namespace fs = std::filesystem;

namespace satcap {
namespace {

// ---------------------------------------------------------------------------------------------
// Reading the bytes

// The largest file read_image_rgb reads (cv::imdecode takes an int-sized buffer).
constexpr std::uint64_t kMaxFileBytes = (std::uint64_t{1} << 31) - 1;

std::vector<std::uint8_t> read_file_bytes(const fs::path& path) {
  const std::string name = path.string();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) throw InputError(name + ": no such file");
    throw InputError(name + ": cannot read (" + errno_text() + ")");
  }
  if (S_ISDIR(st.st_mode)) throw InputError(name + ": is a folder, not an image");
  // A FIFO or device would block or never end: only regular files are images.
  if (!S_ISREG(st.st_mode)) throw InputError(name + ": not a regular file");
  if (st.st_size == 0) throw InputError(name + ": empty file (0 bytes), not an image");
  if (static_cast<std::uint64_t>(st.st_size) > kMaxFileBytes) {
    throw InputError(name + ": file of " + std::to_string(st.st_size) + " bytes is too large for an image");
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // never blocks, whatever replaced the file
  if (fd < 0) throw InputError(name + ": cannot read (" + errno_text() + ")");
  std::vector<std::uint8_t> data(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < data.size()) {
    ssize_t r = ::read(fd, data.data() + got, data.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      ::close(fd);
      throw InputError(name + ": cannot read (" + errno_text(e) + ")");
    }
    if (r == 0) break;  // the file shrank while we read it
    got += static_cast<std::size_t>(r);
  }
  ::close(fd);
  data.resize(got);
  if (data.empty()) throw InputError(name + ": empty file (0 bytes), not an image");
  return data;
}

// ---------------------------------------------------------------------------------------------
// Header parsing: format, dimensions, completeness and EXIF orientation, before any decoding

enum class Format { unknown, jpeg, png, bmp, webp, tiff };

const char* format_name(Format f) {
  switch (f) {
    case Format::jpeg: return "JPEG";
    case Format::png: return "PNG";
    case Format::bmp: return "BMP";
    case Format::webp: return "WebP";
    case Format::tiff: return "TIFF";
    default: return "unknown";
  }
}

struct HeaderInfo {
  Format format = Format::unknown;
  std::int64_t width = 0;
  std::int64_t height = 0;
  int orientation = 1;  // EXIF orientation 1..8 that the caller must apply (1 = none)
};

struct Bytes {
  const std::uint8_t* p;
  std::size_t n;
  std::uint32_t be16(std::size_t i) const { return (std::uint32_t{p[i]} << 8) | p[i + 1]; }
  std::uint32_t be32(std::size_t i) const { return (be16(i) << 16) | be16(i + 2); }
  std::uint32_t le16(std::size_t i) const { return (std::uint32_t{p[i + 1]} << 8) | p[i]; }
  std::uint32_t le32(std::size_t i) const { return (le16(i + 2) << 16) | le16(i); }
  std::uint32_t le24(std::size_t i) const { return (std::uint32_t{p[i + 2]} << 16) | le16(i); }
};

// Reads the Orientation tag (0x0112) of IFD0 from a TIFF structure (an EXIF block without its
// "Exif\0\0" prefix). Anything malformed gives 1: a broken EXIF block must not lose the image.
int tiff_orientation(const std::uint8_t* p, std::size_t n) {
  if (n >= 6 && std::memcmp(p, "Exif\0\0", 6) == 0) {
    p += 6;
    n -= 6;
  }
  if (n < 8) return 1;
  bool little;
  if (p[0] == 'I' && p[1] == 'I') {
    little = true;
  } else if (p[0] == 'M' && p[1] == 'M') {
    little = false;
  } else {
    return 1;
  }
  Bytes b{p, n};
  auto u16 = [&](std::size_t i) { return little ? b.le16(i) : b.be16(i); };
  auto u32 = [&](std::size_t i) { return little ? b.le32(i) : b.be32(i); };
  if (u16(2) != 42) return 1;
  std::size_t ifd = u32(4);
  if (ifd + 2 > n) return 1;
  std::size_t count = u16(ifd);
  for (std::size_t k = 0; k < count; ++k) {
    std::size_t e = ifd + 2 + 12 * k;
    if (e + 12 > n) return 1;
    if (u16(e) == 0x0112 && u16(e + 2) == 3 /* SHORT */) {
      int v = static_cast<int>(u16(e + 8));
      return (v >= 1 && v <= 8) ? v : 1;
    }
  }
  return 1;
}

[[noreturn]] void fail(const std::string& name, const std::string& why) { throw InputError(name + ": " + why); }

std::string hex_byte(std::uint8_t v) {
  const char* digits = "0123456789ABCDEF";
  return {digits[v >> 4], digits[v & 15]};
}

void parse_jpeg(const std::string& name, Bytes b, HeaderInfo& h) {
  bool have_frame = false, have_exif = false, seen_scan = false;
  std::size_t pos = 2;
  while (true) {
    if (pos + 2 > b.n) fail(name, "truncated JPEG (no end-of-image marker)");
    if (b.p[pos] != 0xFF) {  // stray bytes between segments: skipped, as libjpeg does
      ++pos;
      continue;
    }
    std::uint8_t marker = b.p[pos + 1];
    if (marker < 0xC0 && marker != 0x01 && marker != 0xFF) {
      fail(name, "corrupt JPEG (invalid marker 0xFF" + hex_byte(marker) + " at byte " + std::to_string(pos) + ")");
    }
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    if (marker == 0xD9) break;  // EOI: complete
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
      pos += 2;
      continue;
    }
    if (pos + 4 > b.n) fail(name, "truncated JPEG (no end-of-image marker)");
    std::size_t len = b.be16(pos + 2);
    if (len < 2) fail(name, "corrupt JPEG (bad segment length)");
    if (pos + 2 + len > b.n) fail(name, "truncated JPEG (segment runs past the end of the file)");
    const std::uint8_t* seg = b.p + pos + 4;
    std::size_t seg_n = len - 2;
    bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof && !have_frame) {
      if (seg_n < 6) fail(name, "corrupt JPEG (short frame header)");
      Bytes s{seg, seg_n};
      h.height = s.be16(1);
      h.width = s.be16(3);
      have_frame = true;
    } else if (marker == 0xE1 && !have_exif && seg_n >= 6 && std::memcmp(seg, "Exif\0\0", 6) == 0) {
      h.orientation = tiff_orientation(seg, seg_n);
      have_exif = true;
    }
    pos += 2 + len;
    if (marker == 0xDA) {  // SOS: entropy-coded data follows, up to the next real marker
      if (!have_frame) fail(name, "corrupt JPEG (scan before frame header)");
      seen_scan = true;
      while (true) {
        const void* ff = pos < b.n ? std::memchr(b.p + pos, 0xFF, b.n - pos) : nullptr;
        if (ff == nullptr) fail(name, "truncated JPEG (image data ends without an end-of-image marker)");
        pos = static_cast<std::size_t>(static_cast<const std::uint8_t*>(ff) - b.p);
        if (pos + 1 >= b.n) fail(name, "truncated JPEG (image data ends without an end-of-image marker)");
        std::uint8_t next = b.p[pos + 1];
        if (next == 0x00 || (next >= 0xD0 && next <= 0xD7) || next == 0xFF) {
          pos += (next == 0xFF) ? 1 : 2;
          continue;
        }
        break;  // a marker: EOI, another table, or the next scan of a progressive JPEG
      }
    }
  }
  if (!have_frame || !seen_scan) fail(name, "corrupt JPEG (no image data)");
  if (h.width == 0 || h.height == 0) fail(name, "unsupported JPEG (frame header without dimensions)");
}

void parse_png(const std::string& name, Bytes b, HeaderInfo& h) {
  std::size_t pos = 8;
  bool first = true, have_data = false;
  while (true) {
    if (pos + 8 > b.n) fail(name, "truncated PNG (no IEND chunk)");
    std::size_t len = b.be32(pos);
    const std::uint8_t* type = b.p + pos + 4;
    if (len > b.n || pos + 12 + len > b.n) fail(name, "truncated PNG (chunk runs past the end of the file)");
    const std::uint8_t* data = b.p + pos + 8;
    if (first) {
      if (std::memcmp(type, "IHDR", 4) != 0 || len < 13) fail(name, "corrupt PNG (no IHDR header)");
      Bytes d{data, len};
      h.width = d.be32(0);
      h.height = d.be32(4);
      first = false;
    } else if (std::memcmp(type, "IDAT", 4) == 0) {
      have_data = true;
    } else if (std::memcmp(type, "eXIf", 4) == 0) {
      h.orientation = tiff_orientation(data, len);
    } else if (std::memcmp(type, "IEND", 4) == 0) {
      break;
    }
    pos += 12 + len;
  }
  if (!have_data) fail(name, "corrupt PNG (no image data)");
  if (h.width == 0 || h.height == 0) fail(name, "corrupt PNG (zero width or height)");
}

void parse_bmp(const std::string& name, Bytes b, HeaderInfo& h) {
  if (b.n < 26) fail(name, "truncated BMP (header incomplete)");
  std::size_t offset = b.le32(10);
  std::size_t dib = b.le32(14);
  std::int64_t bpp = 0, compression = 0;
  if (dib == 12) {
    h.width = b.le16(18);
    h.height = b.le16(20);
    bpp = b.le16(24);
  } else {
    if (b.n < 34 || dib < 16) fail(name, "truncated BMP (header incomplete)");
    h.width = static_cast<std::int32_t>(b.le32(18));
    h.height = static_cast<std::int32_t>(b.le32(22));
    bpp = b.le16(28);
    compression = b.le32(30);
  }
  if (h.height < 0) h.height = -h.height;  // top-down BMP
  if (h.width <= 0 || h.height <= 0) fail(name, "corrupt BMP (bad dimensions)");
  if (compression == 0 || compression == 3 || compression == 6) {  // uncompressed rows
    std::uint64_t stride = ((static_cast<std::uint64_t>(bpp) * h.width + 31) / 32) * 4;
    if (offset + stride * static_cast<std::uint64_t>(h.height) > b.n) fail(name, "truncated BMP (pixel data incomplete)");
  }
}

void parse_webp(const std::string& name, Bytes b, HeaderInfo& h) {
  std::size_t riff = b.le32(4);
  if (riff + 8 > b.n) fail(name, "truncated WebP (file shorter than its RIFF header says)");
  std::size_t end = riff + 8, pos = 12;
  bool have_size = false;
  while (pos + 8 <= end) {
    const std::uint8_t* tag = b.p + pos;
    std::size_t len = b.le32(pos + 4);
    if (len > end || pos + 8 + len > end) fail(name, "truncated WebP (chunk runs past the end of the file)");
    Bytes d{b.p + pos + 8, len};
    if (std::memcmp(tag, "VP8X", 4) == 0 && len >= 10) {
      h.width = std::int64_t{d.le24(4)} + 1;
      h.height = std::int64_t{d.le24(7)} + 1;
      have_size = true;
    } else if (std::memcmp(tag, "VP8 ", 4) == 0 && len >= 10 && !have_size) {
      if (d.p[3] != 0x9D || d.p[4] != 0x01 || d.p[5] != 0x2A) fail(name, "corrupt WebP (bad VP8 frame)");
      h.width = d.le16(6) & 0x3FFF;
      h.height = d.le16(8) & 0x3FFF;
      have_size = true;
    } else if (std::memcmp(tag, "VP8L", 4) == 0 && len >= 5 && !have_size) {
      if (d.p[0] != 0x2F) fail(name, "corrupt WebP (bad VP8L signature)");
      std::uint32_t bits = d.le32(1);
      h.width = std::int64_t{bits & 0x3FFF} + 1;
      h.height = std::int64_t{(bits >> 14) & 0x3FFF} + 1;
      have_size = true;
    } else if (std::memcmp(tag, "EXIF", 4) == 0) {
      h.orientation = tiff_orientation(d.p, d.n);
    }
    pos += 8 + len + (len & 1);
  }
  if (!have_size || h.width == 0 || h.height == 0) fail(name, "corrupt WebP (no image data)");
}

void parse_tiff(const std::string& name, Bytes b, HeaderInfo& h) {
  bool little = b.p[0] == 'I';
  auto u16 = [&](std::size_t i) { return little ? b.le16(i) : b.be16(i); };
  auto u32 = [&](std::size_t i) { return little ? b.le32(i) : b.be32(i); };
  if (u16(2) == 43) fail(name, "unsupported TIFF (BigTIFF)");
  std::size_t ifd = u32(4);
  if (ifd + 2 > b.n) fail(name, "truncated TIFF (no image directory)");
  std::size_t count = u16(ifd);
  for (std::size_t k = 0; k < count; ++k) {
    std::size_t e = ifd + 2 + 12 * k;
    if (e + 12 > b.n) fail(name, "truncated TIFF (image directory incomplete)");
    std::uint32_t tag = u16(e), type = u16(e + 2);
    std::int64_t value = type == 3 ? u16(e + 8) : type == 4 ? u32(e + 8) : 0;
    if (tag == 256) h.width = value;
    if (tag == 257) h.height = value;
  }
  // The TIFF decoder applies the Orientation tag itself; nothing left for the caller.
  if (h.width <= 0 || h.height <= 0) fail(name, "corrupt TIFF (no image dimensions)");
}

HeaderInfo parse_header(const std::string& name, const std::vector<std::uint8_t>& data) {
  Bytes b{data.data(), data.size()};
  HeaderInfo h;
  static const std::uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (b.n >= 3 && b.p[0] == 0xFF && b.p[1] == 0xD8 && b.p[2] == 0xFF) {
    h.format = Format::jpeg;
    parse_jpeg(name, b, h);
  } else if (b.n >= 8 && std::memcmp(b.p, png_sig, 8) == 0) {
    h.format = Format::png;
    parse_png(name, b, h);
  } else if (b.n >= 2 && b.p[0] == 'B' && b.p[1] == 'M') {
    h.format = Format::bmp;
    parse_bmp(name, b, h);
  } else if (b.n >= 16 && std::memcmp(b.p, "RIFF", 4) == 0 && std::memcmp(b.p + 8, "WEBP", 4) == 0) {
    h.format = Format::webp;
    parse_webp(name, b, h);
  } else if (b.n >= 8 && (std::memcmp(b.p, "II*\0", 4) == 0 || std::memcmp(b.p, "MM\0*", 4) == 0 ||
                          std::memcmp(b.p, "II+\0", 4) == 0 || std::memcmp(b.p, "MM\0+", 4) == 0)) {
    h.format = Format::tiff;
    parse_tiff(name, b, h);
  } else {
    fail(name, "not an image (not JPEG, PNG, BMP, WebP or TIFF data)");
  }
  return h;
}

// ---------------------------------------------------------------------------------------------
// Decoding with the codecs' chatter kept off the user's terminal

// libjpeg and libpng print their warnings ("Corrupt JPEG data: ...", "libpng warning: iCCP: ...")
// straight to stderr. While a decoder runs, file descriptor 2 points at a temporary file; what the
// decoder wrote is returned (to explain a failure), anything else is passed on to stderr.
// Process-wide, so decodes are serialised by a mutex.
std::mutex g_decode_mutex;

bool is_codec_message(const std::string& line) {
  static const char* prefixes[] = {"Corrupt JPEG data", "Premature end of JPEG", "Invalid SOS", "Warning:",
                                   "libpng ", "Unsupported marker", "Invalid JPEG", "Bogus ", "JPEG",
                                   "[ WARN:", "[ERROR:", "TIFF", "Not a JPEG", "Huffman", "Invalid",
                                   "Inconsistent", "Application transferred"};
  for (const char* p : prefixes) {
    if (line.rfind(p, 0) == 0) return true;
  }
  return line.find("TIFF") != std::string::npos;
}

cv::Mat decode_quietly(const std::vector<std::uint8_t>& data, std::string& messages) {
  std::lock_guard<std::mutex> lock(g_decode_mutex);
  std::fflush(stderr);
  std::FILE* capture = std::tmpfile();
  int saved = capture ? ::dup(2) : -1;
  bool redirected = saved >= 0 && ::dup2(::fileno(capture), 2) >= 0;
  cv::Mat raw;
  std::string cv_error;
  try {
    cv::Mat buffer(1, static_cast<int>(data.size()), CV_8UC1, const_cast<std::uint8_t*>(data.data()));
    raw = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    cv_error = e.what();
    raw.release();
  }
  std::fflush(stderr);
  if (redirected) ::dup2(saved, 2);
  if (saved >= 0) ::close(saved);
  if (capture) {
    std::rewind(capture);
    std::string text;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, capture)) > 0) text.append(buf, n);
    std::fclose(capture);
    std::istringstream lines(text);
    std::string line, others;
    while (std::getline(lines, line)) {
      if (is_codec_message(line)) {
        if (!messages.empty()) messages += "; ";
        messages += line;
      } else {
        others += line + "\n";
      }
    }
    if (!others.empty()) std::fputs(others.c_str(), stderr);
  }
  if (!cv_error.empty()) {
    if (!messages.empty()) messages += "; ";
    messages += cv_error;
  }
  return raw;
}

// ---------------------------------------------------------------------------------------------
// To 8-bit RGB

cv::Mat to_8bit(const cv::Mat& m) {
  cv::Mat out;
  switch (m.depth()) {
    case CV_8U: return m;
    case CV_8S: m.convertTo(out, CV_8U, 1.0, 128.0); return out;
    case CV_16U: m.convertTo(out, CV_8U, 255.0 / 65535.0); return out;
    case CV_16S: m.convertTo(out, CV_8U, 255.0 / 65535.0, 127.5); return out;
    case CV_32F:
    case CV_64F: m.convertTo(out, CV_8U, 255.0); return out;  // float images are in [0, 1]
    default: cv::normalize(m, out, 0, 255, cv::NORM_MINMAX, CV_8U); return out;
  }
}

// `bgr` 3 channels, `alpha` 1 channel, both 8-bit: composites on white.
cv::Mat composite_on_white(const cv::Mat& bgr, const cv::Mat& alpha) {
  cv::Mat out(bgr.size(), CV_8UC3);
  for (int y = 0; y < bgr.rows; ++y) {
    const cv::Vec3b* c = bgr.ptr<cv::Vec3b>(y);
    const std::uint8_t* a = alpha.ptr<std::uint8_t>(y);
    cv::Vec3b* o = out.ptr<cv::Vec3b>(y);
    for (int x = 0; x < bgr.cols; ++x) {
      int av = a[x];
      for (int k = 0; k < 3; ++k) o[x][k] = static_cast<std::uint8_t>((c[x][k] * av + 255 * (255 - av) + 127) / 255);
    }
  }
  return out;
}

// EXIF orientation 1..8 -> upright (the same transforms OpenCV's IMREAD_COLOR applies).
void apply_orientation(cv::Mat& img, int orientation) {
  switch (orientation) {
    case 2: cv::flip(img, img, 1); break;
    case 3: cv::flip(img, img, -1); break;
    case 4: cv::flip(img, img, 0); break;
    case 5: cv::transpose(img, img); break;
    case 6: cv::transpose(img, img); cv::flip(img, img, 1); break;
    case 7: cv::transpose(img, img); cv::flip(img, img, -1); break;
    case 8: cv::transpose(img, img); cv::flip(img, img, 0); break;
    default: break;
  }
}

}  // namespace

bool has_image_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const char* known[] = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"};
  return std::any_of(std::begin(known), std::end(known), [&](const char* k) { return ext == k; });
}

cv::Mat read_image_rgb(const fs::path& path, const ImageLimits& limits) {
  const std::string name = path.string();
  std::vector<std::uint8_t> data = read_file_bytes(path);
  HeaderInfo h = parse_header(name, data);
  const char* fmt = format_name(h.format);
  if (h.width * h.height > limits.max_pixels) {
    throw InputError(name + ": " + std::to_string(h.width) + "x" + std::to_string(h.height) +
                     " pixels exceeds the limit of " + std::to_string(limits.max_pixels) + " pixels");
  }
  std::string messages;
  cv::Mat raw;
  std::int64_t want_w = h.width, want_h = h.height;  // what the decoder must give
  bool rgb_order = false;                            // raw is RGB (libjpeg) rather than BGR (OpenCV)
  detail::JpegDecoded jpeg;
  if (h.format == Format::jpeg) jpeg = detail::decode_jpeg(data, limits.min_side);
  if (h.format == Format::jpeg && jpeg.handled) {
    raw = jpeg.image;
    messages = jpeg.messages;
    want_w = detail::scaled_size(h.width, jpeg.scale_denom);
    want_h = detail::scaled_size(h.height, jpeg.scale_denom);
    rgb_order = true;
  } else {
    raw = decode_quietly(data, messages);
  }
  if (raw.empty()) {
    throw InputError(name + ": cannot decode " + fmt + " data" + (messages.empty() ? "" : " (" + messages + ")"));
  }
  if (messages.find("remature end") != std::string::npos) {  // libjpeg: "[Pp]remature end of ..."
    throw InputError(name + ": truncated " + std::string(fmt) + " data (" + messages + ")");
  }
  // Damaged entropy-coded data decodes to garbage with only a warning; refuse it. (Other
  // warnings, such as "extraneous bytes before marker", leave the image intact.)
  bool bad_restart = false;  // "extraneous bytes before marker 0xd0".."0xd7": a restart interval did not decode
  for (std::size_t at = messages.find("before marker 0xd"); at != std::string::npos;
       at = messages.find("before marker 0xd", at + 1)) {
    char digit = at + 17 < messages.size() ? messages[at + 17] : 'x';
    bad_restart = bad_restart || (digit >= '0' && digit <= '7');
  }
  if (bad_restart || messages.find("Huffman") != std::string::npos || messages.find("Invalid") != std::string::npos) {
    throw InputError(name + ": corrupt " + std::string(fmt) + " data (" + messages + ")");
  }
  if (raw.cols != want_w || raw.rows != want_h) {
    // Only the TIFF decoder may turn the image (its own Orientation tag).
    bool turned = h.format == Format::tiff && raw.cols == h.height && raw.rows == h.width;
    if (!turned) {
      throw InputError(name + ": corrupt " + std::string(fmt) + " (header says " + std::to_string(h.width) + "x" +
                       std::to_string(h.height) + ", decoder gave " + std::to_string(raw.cols) + "x" +
                       std::to_string(raw.rows) + ")");
    }
  }
  if (rgb_order) {  // libjpeg's RGB or grey: no channel swap, no alpha
    cv::Mat rgb = raw;
    if (raw.channels() == 1) cv::cvtColor(raw, rgb, cv::COLOR_GRAY2RGB);
    apply_orientation(rgb, h.orientation);
    return rgb;
  }
  cv::Mat m = to_8bit(raw);
  cv::Mat rgb;
  switch (m.channels()) {
    case 1: cv::cvtColor(m, rgb, cv::COLOR_GRAY2RGB); break;
    case 2: {
      cv::Mat planes[2];
      cv::split(m, planes);
      cv::Mat bgr;
      cv::cvtColor(planes[0], bgr, cv::COLOR_GRAY2BGR);
      cv::cvtColor(composite_on_white(bgr, planes[1]), rgb, cv::COLOR_BGR2RGB);
      break;
    }
    case 3: cv::cvtColor(m, rgb, cv::COLOR_BGR2RGB); break;
    case 4: {
      cv::Mat planes[4];
      cv::split(m, planes);
      cv::Mat bgr;
      cv::merge(planes, 3, bgr);
      cv::cvtColor(composite_on_white(bgr, planes[3]), rgb, cv::COLOR_BGR2RGB);
      break;
    }
    default:
      throw InputError(name + ": unsupported " + std::string(fmt) + " with " + std::to_string(m.channels()) + " channels");
  }
  apply_orientation(rgb, h.orientation);
  return rgb;
}

std::vector<fs::path> expand_image_inputs(const std::vector<std::string>& inputs) {
  std::vector<fs::path> out;
  for (const auto& input : inputs) {
    fs::path p(input);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> found;
      auto options = fs::directory_options::skip_permission_denied;
      fs::recursive_directory_iterator it(p, options, ec), end;
      if (ec) throw InputError(p.string() + ": cannot list folder (" + ec.message() + ")");
      for (; it != end; it.increment(ec)) {
        if (ec) throw InputError(p.string() + ": cannot list folder (" + ec.message() + ")");
        std::error_code fec;
        if (it->is_regular_file(fec) && has_image_extension(it->path())) found.push_back(it->path());
      }
      if (found.empty()) throw InputError(p.string() + ": folder holds no images (.jpg .jpeg .png .bmp .webp .tif .tiff)");
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
      continue;
    }
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == ".txt" || ext == ".lst") {
      if (!fs::exists(p, ec)) throw InputError(p.string() + ": no such image list");
      std::istringstream list(read_input_file(p, ExitCode::input));  // a FIFO named x.txt must not block
      std::string line;
      bool first = true;
      while (std::getline(list, line)) {
        if (first && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // UTF-8 byte order mark
        first = false;
        auto not_space = [](unsigned char c) { return !std::isspace(c); };
        line.erase(line.begin(), std::find_if(line.begin(), line.end(), not_space));
        line.erase(std::find_if(line.rbegin(), line.rend(), not_space).base(), line.end());
        if (line.empty() || line[0] == '#') continue;
        fs::path entry(line);
        out.push_back(entry.is_absolute() ? entry : p.parent_path() / entry);
      }
    } else {
      if (!fs::exists(p, ec)) throw InputError(p.string() + ": no such file or folder");
      out.push_back(p);
    }
  }
  return out;
}

}  // namespace satcap
