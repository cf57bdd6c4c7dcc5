// read_image_rgb and expand_image_inputs: every case is built here, in a temporary folder, with
// OpenCV's encoders (or by hand where an encoder cannot make it: EXIF, truncation, bombs).
#include "testing.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "satcap/data/image.h"
#include "satcap/runtime/error.h"
#include "test_util.h"

using namespace satcap;
namespace fs = std::filesystem;

namespace {

using ByteVec = std::vector<std::uint8_t>;

ByteVec encode(const std::string& ext, const cv::Mat& img, const std::vector<int>& params = {}) {
  ByteVec out;
  REQUIRE(cv::imencode(ext, img, out, params));
  return out;
}

void write_bytes(const fs::path& path, const ByteVec& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

cv::Vec3b rgb_at(const cv::Mat& m, int y, int x) { return m.at<cv::Vec3b>(y, x); }

// A BGR test card: left half red, right half blue, top-left 4x4 corner green.
cv::Mat test_card(int w, int h) {
  cv::Mat m(h, w, CV_8UC3, cv::Scalar(0, 0, 255));                                 // red (BGR)
  m(cv::Rect(w / 2, 0, w - w / 2, h)).setTo(cv::Scalar(255, 0, 0));                // blue
  m(cv::Rect(0, 0, 4, 4)).setTo(cv::Scalar(0, 255, 0));                             // green
  return m;
}

void push_be16(ByteVec& v, unsigned x) {
  v.push_back(static_cast<std::uint8_t>(x >> 8));
  v.push_back(static_cast<std::uint8_t>(x));
}
void push_be32(ByteVec& v, std::uint32_t x) {
  push_be16(v, x >> 16);
  push_be16(v, x & 0xFFFF);
}

// A big-endian TIFF structure whose IFD0 holds one entry: Orientation = `orientation`.
ByteVec exif_tiff_block(int orientation) {
  ByteVec t = {'M', 'M', 0x00, 0x2A};
  push_be32(t, 8);                 // IFD0 offset
  push_be16(t, 1);                 // one entry
  push_be16(t, 0x0112);            // Orientation
  push_be16(t, 3);                 // SHORT
  push_be32(t, 1);                 // count
  push_be16(t, static_cast<unsigned>(orientation));
  push_be16(t, 0);                 // padding of the 4-byte value field
  push_be32(t, 0);                 // no next IFD
  return t;
}

// Inserts an APP1 "Exif" segment right after the SOI marker of a JPEG.
ByteVec jpeg_with_orientation(const ByteVec& jpeg, int orientation) {
  ByteVec tiff = exif_tiff_block(orientation);
  ByteVec app1 = {0xFF, 0xE1};
  push_be16(app1, static_cast<unsigned>(2 + 6 + tiff.size()));
  const char exif[6] = {'E', 'x', 'i', 'f', 0, 0};
  app1.insert(app1.end(), exif, exif + 6);
  app1.insert(app1.end(), tiff.begin(), tiff.end());
  ByteVec out(jpeg.begin(), jpeg.begin() + 2);
  out.insert(out.end(), app1.begin(), app1.end());
  out.insert(out.end(), jpeg.begin() + 2, jpeg.end());
  return out;
}

std::uint32_t crc32_png(const std::uint8_t* p, std::size_t n) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}

ByteVec png_chunk(const char* type, const ByteVec& data) {
  ByteVec c;
  push_be32(c, static_cast<std::uint32_t>(data.size()));
  c.insert(c.end(), type, type + 4);
  c.insert(c.end(), data.begin(), data.end());
  push_be32(c, crc32_png(c.data() + 4, c.size() - 4));
  return c;
}

// Inserts an eXIf chunk right after IHDR (8-byte signature + 25-byte IHDR chunk).
ByteVec png_with_orientation(const ByteVec& png, int orientation) {
  ByteVec chunk = png_chunk("eXIf", exif_tiff_block(orientation));
  ByteVec out;
  out.reserve(png.size() + chunk.size());
  std::copy(png.begin(), png.begin() + 33, std::back_inserter(out));
  std::copy(chunk.begin(), chunk.end(), std::back_inserter(out));
  std::copy(png.begin() + 33, png.end(), std::back_inserter(out));
  return out;
}

// A syntactically valid PNG header claiming width x height, with a token IDAT: never decodable,
// so reading it only succeeds in refusing it by its header.
ByteVec png_header_only(std::uint32_t width, std::uint32_t height) {
  ByteVec out = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  ByteVec ihdr;
  push_be32(ihdr, width);
  push_be32(ihdr, height);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit RGB
  ByteVec chunks[3] = {png_chunk("IHDR", ihdr), png_chunk("IDAT", {0x78, 0x9C, 0x03, 0x00}), png_chunk("IEND", {})};
  for (const ByteVec& c : chunks) std::copy(c.begin(), c.end(), std::back_inserter(out));
  return out;
}

std::string error_of(const fs::path& path, const ImageLimits& limits = {}) {
  try {
    read_image_rgb(path, limits);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

}  // namespace

TEST_CASE("lossless formats come back as exact RGB, never BGR", "[image]") {
  fs::path dir = fresh_temp_dir("image_formats");
  cv::Mat card = test_card(32, 24);
  const std::vector<std::pair<std::string, std::vector<int>>> formats = {
      {".png", {}}, {".bmp", {}}, {".tiff", {}}, {".webp", {cv::IMWRITE_WEBP_QUALITY, 101}}};
  for (const auto& [ext, params] : formats) {
    INFO(ext);
    fs::path p = dir / ("card" + ext);
    write_bytes(p, encode(ext, card, params));
    cv::Mat m = read_image_rgb(p);
    REQUIRE(m.type() == CV_8UC3);
    REQUIRE(m.cols == 32);
    REQUIRE(m.rows == 24);
    REQUIRE(rgb_at(m, 10, 5) == cv::Vec3b(255, 0, 0));   // red on the left
    REQUIRE(rgb_at(m, 10, 25) == cv::Vec3b(0, 0, 255));  // blue on the right
    REQUIRE(rgb_at(m, 1, 1) == cv::Vec3b(0, 255, 0));    // green corner top-left
  }
}

TEST_CASE("the format is told by the bytes, not the extension", "[image]") {
  fs::path dir = fresh_temp_dir("image_sniff");
  fs::path p = dir / "really_a_png.jpg";
  write_bytes(p, encode(".png", test_card(16, 16)));
  REQUIRE(rgb_at(read_image_rgb(p), 8, 2) == cv::Vec3b(255, 0, 0));
}

TEST_CASE("16-bit, grayscale and alpha images become 8-bit RGB", "[image]") {
  fs::path dir = fresh_temp_dir("image_depths");

  SECTION("16-bit colour PNG") {
    cv::Mat m16(8, 8, CV_16UC3, cv::Scalar(0, 32896, 65535));  // BGR: red full, green half
    fs::path p = dir / "deep.png";
    write_bytes(p, encode(".png", m16));
    cv::Mat m = read_image_rgb(p);
    REQUIRE(m.type() == CV_8UC3);
    REQUIRE(rgb_at(m, 3, 3) == cv::Vec3b(255, 128, 0));
  }
  SECTION("16-bit grayscale TIFF") {
    cv::Mat m16(8, 8, CV_16UC1, cv::Scalar(65535));
    m16(cv::Rect(0, 0, 4, 8)).setTo(cv::Scalar(0));
    fs::path p = dir / "deep_gray.tif";
    write_bytes(p, encode(".tif", m16));
    cv::Mat m = read_image_rgb(p);
    REQUIRE(m.type() == CV_8UC3);
    REQUIRE(rgb_at(m, 2, 1) == cv::Vec3b(0, 0, 0));
    REQUIRE(rgb_at(m, 2, 6) == cv::Vec3b(255, 255, 255));
  }
  SECTION("8-bit grayscale PNG and JPEG") {
    cv::Mat g(8, 8, CV_8UC1, cv::Scalar(77));
    for (const char* ext : {".png", ".jpg"}) {
      fs::path p = dir / (std::string("gray") + ext);
      write_bytes(p, encode(ext, g));
      cv::Mat m = read_image_rgb(p);
      REQUIRE(m.type() == CV_8UC3);
      cv::Vec3b v = rgb_at(m, 4, 4);
      REQUIRE(v[0] == v[1]);
      REQUIRE(v[1] == v[2]);
      REQUIRE(std::abs(int(v[0]) - 77) <= 1);
    }
  }
  SECTION("RGBA PNG is composited on white") {
    cv::Mat a(4, 3, CV_8UC4);
    a.at<cv::Vec4b>(0, 0) = {0, 0, 255, 255};  // opaque red (BGRA)
    a.at<cv::Vec4b>(0, 1) = {0, 0, 0, 0};      // fully transparent black -> white
    a.at<cv::Vec4b>(0, 2) = {0, 0, 0, 128};    // half-transparent black -> mid grey
    a.row(0).copyTo(a.row(1));
    a.row(0).copyTo(a.row(2));
    a.row(0).copyTo(a.row(3));
    fs::path p = dir / "alpha.png";
    write_bytes(p, encode(".png", a));
    cv::Mat m = read_image_rgb(p);
    REQUIRE(m.type() == CV_8UC3);
    REQUIRE(rgb_at(m, 2, 0) == cv::Vec3b(255, 0, 0));
    REQUIRE(rgb_at(m, 2, 1) == cv::Vec3b(255, 255, 255));
    REQUIRE(rgb_at(m, 2, 2) == cv::Vec3b(127, 127, 127));
  }
  SECTION("16-bit RGBA PNG is composited on white") {
    cv::Mat a(4, 4, CV_16UC4, cv::Scalar(65535, 0, 0, 0));  // transparent blue
    a(cv::Rect(0, 0, 2, 4)).setTo(cv::Scalar(65535, 0, 0, 65535));  // opaque blue on the left
    fs::path p = dir / "alpha16.png";
    write_bytes(p, encode(".png", a));
    cv::Mat m = read_image_rgb(p);
    REQUIRE(rgb_at(m, 1, 0) == cv::Vec3b(0, 0, 255));
    REQUIRE(rgb_at(m, 1, 3) == cv::Vec3b(255, 255, 255));
  }
  SECTION("WebP with alpha") {
    cv::Mat a(8, 8, CV_8UC4, cv::Scalar(0, 255, 0, 0));
    a(cv::Rect(0, 0, 4, 8)).setTo(cv::Scalar(0, 255, 0, 255));
    fs::path p = dir / "alpha.webp";
    write_bytes(p, encode(".webp", a, {cv::IMWRITE_WEBP_QUALITY, 101}));
    cv::Mat m = read_image_rgb(p);
    REQUIRE(rgb_at(m, 4, 1) == cv::Vec3b(0, 255, 0));
    REQUIRE(rgb_at(m, 4, 6) == cv::Vec3b(255, 255, 255));
  }
}

TEST_CASE("EXIF orientation is applied, for JPEG as OpenCV's IMREAD_COLOR applies it", "[image]") {
  fs::path dir = fresh_temp_dir("image_exif");
  cv::Mat card = test_card(40, 24);  // red left, blue right, green top-left corner
  ByteVec jpeg = encode(".jpg", card, {cv::IMWRITE_JPEG_QUALITY, 95});
  for (int orientation = 1; orientation <= 8; ++orientation) {
    INFO("orientation " << orientation);
    fs::path p = dir / ("o" + std::to_string(orientation) + ".jpg");
    write_bytes(p, jpeg_with_orientation(jpeg, orientation));
    cv::Mat m = read_image_rgb(p);
    cv::Mat reference;
    cv::cvtColor(cv::imread(p.string(), cv::IMREAD_COLOR), reference, cv::COLOR_BGR2RGB);
    REQUIRE(m.size() == reference.size());
    REQUIRE(cv::norm(m, reference, cv::NORM_INF) == 0);
    bool turned = orientation >= 5;
    REQUIRE(m.cols == (turned ? 24 : 40));
  }
  // Orientation 6 means "rotate 90 degrees clockwise to view": the left (red) half goes on top,
  // the top-left green corner to the top-right.
  cv::Mat m = read_image_rgb(dir / "o6.jpg");
  cv::Vec3b top = rgb_at(m, 8, 12), bottom = rgb_at(m, 32, 12), corner = rgb_at(m, 1, 22);
  CHECK(top[0] > 200);
  CHECK(top[2] < 60);
  CHECK(bottom[2] > 200);
  CHECK(bottom[0] < 60);
  CHECK(corner[1] > 150);
  // Orientation 3 (180 degrees) on a PNG's eXIf chunk: blue now on the left, green bottom-right.
  fs::path p = dir / "o3.png";
  write_bytes(p, png_with_orientation(encode(".png", card), 3));
  cv::Mat flipped = read_image_rgb(p);
  REQUIRE(rgb_at(flipped, 10, 5) == cv::Vec3b(0, 0, 255));
  REQUIRE(rgb_at(flipped, 22, 38) == cv::Vec3b(0, 255, 0));
}

TEST_CASE("EXIF orientation survives alpha: an RGBA PNG with eXIf is turned and composited", "[image]") {
  fs::path dir = fresh_temp_dir("image_exif_alpha");
  cv::Mat a(10, 20, CV_8UC4, cv::Scalar(0, 0, 255, 255));          // opaque red
  a(cv::Rect(10, 0, 10, 10)).setTo(cv::Scalar(0, 0, 0, 0));         // transparent right half
  fs::path p = dir / "o8.png";
  write_bytes(p, png_with_orientation(encode(".png", a), 8));        // rotate 90 counter-clockwise
  cv::Mat m = read_image_rgb(p);
  REQUIRE(m.cols == 10);
  REQUIRE(m.rows == 20);
  REQUIRE(rgb_at(m, 2, 5) == cv::Vec3b(255, 255, 255));  // the right half is now on top
  REQUIRE(rgb_at(m, 17, 5) == cv::Vec3b(255, 0, 0));
}

TEST_CASE("a real photograph reads as OpenCV decodes it, in RGB", "[image]") {
  fs::path photo = "/usr/share/darknet/data/dog.jpg";
  if (!fs::exists(photo)) photo = source_dir() / "datasets/samples/dog.jpg";
  if (!fs::exists(photo)) {
    WARN("no photograph found (darknet package not installed)");
    return;
  }
  cv::Mat m = read_image_rgb(photo);
  cv::Mat bgr = cv::imread(photo.string(), cv::IMREAD_COLOR);
  REQUIRE(m.size() == bgr.size());
  cv::Mat reference;
  cv::cvtColor(bgr, reference, cv::COLOR_BGR2RGB);
  REQUIRE(cv::norm(m, reference, cv::NORM_INF) == 0);
  REQUIRE(cv::norm(m, bgr, cv::NORM_INF) > 0);  // the channel order really differs

  // The same photograph re-encoded as a progressive JPEG (several scans) reads too.
  fs::path dir = fresh_temp_dir("image_photo");
  fs::path p = dir / "progressive.jpg";
  write_bytes(p, encode(".jpg", bgr, {cv::IMWRITE_JPEG_PROGRESSIVE, 1}));
  cv::Mat prog = read_image_rgb(p);
  REQUIRE(prog.size() == bgr.size());
  REQUIRE(cv::norm(prog, reference, cv::NORM_L1) / prog.total() < 30.0);
}

TEST_CASE("bad files give an InputError that names the file and the reason", "[image]") {
  fs::path dir = fresh_temp_dir("image_errors");
  cv::Mat noise(64, 64, CV_8UC3);
  cv::randu(noise, 0, 256);
  ByteVec jpeg = encode(".jpg", noise);
  ByteVec png = encode(".png", noise);

  SECTION("missing") {
    fs::path p = dir / "nope.jpg";
    std::string e = error_of(p);
    REQUIRE_THAT(e, Catch::Contains(p.string()) && Catch::Contains("no such file"));
  }
  SECTION("a folder") {
    REQUIRE_THAT(error_of(dir), Catch::Contains("folder"));
  }
  SECTION("zero bytes") {
    fs::path p = dir / "empty.png";
    write_bytes(p, {});
    REQUIRE_THAT(error_of(p), Catch::Contains(p.string()) && Catch::Contains("empty file"));
  }
  SECTION("text renamed .jpg") {
    fs::path p = dir / "notes.jpg";
    write_text_file(p, "this is not a picture\n");
    REQUIRE_THAT(error_of(p), Catch::Contains(p.string()) && Catch::Contains("not an image"));
  }
  SECTION("truncated JPEG at several points") {
    for (std::size_t keep : {std::size_t{3}, std::size_t{40}, jpeg.size() / 2, jpeg.size() - 2}) {
      INFO("kept " << keep << " of " << jpeg.size() << " bytes");
      fs::path p = dir / "cut.jpg";
      write_bytes(p, ByteVec(jpeg.begin(), jpeg.begin() + static_cast<std::ptrdiff_t>(keep)));
      REQUIRE_THAT(error_of(p), Catch::Contains(p.string()) && Catch::Contains("truncated JPEG"));
    }
  }
  SECTION("truncated PNG") {
    for (std::size_t keep : {std::size_t{20}, png.size() / 2, png.size() - 12}) {
      INFO("kept " << keep << " of " << png.size() << " bytes");
      fs::path p = dir / "cut.png";
      write_bytes(p, ByteVec(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(keep)));
      REQUIRE_THAT(error_of(p), Catch::Contains(p.string()) && Catch::Contains("truncated PNG"));
    }
  }
  SECTION("truncated BMP and WebP") {
    ByteVec bmp = encode(".bmp", noise), webp = encode(".webp", noise);
    fs::path p = dir / "cut.bmp";
    write_bytes(p, ByteVec(bmp.begin(), bmp.begin() + static_cast<std::ptrdiff_t>(bmp.size() / 2)));
    REQUIRE_THAT(error_of(p), Catch::Contains("truncated BMP"));
    p = dir / "cut.webp";
    write_bytes(p, ByteVec(webp.begin(), webp.begin() + static_cast<std::ptrdiff_t>(webp.size() / 2)));
    REQUIRE_THAT(error_of(p), Catch::Contains("truncated WebP"));
  }
  SECTION("JPEG cut in the middle with an end marker glued on: the decoder's complaint is the reason") {
    ByteVec cut(jpeg.begin(), jpeg.begin() + static_cast<std::ptrdiff_t>(jpeg.size() / 2));
    cut.push_back(0xFF);
    cut.push_back(0xD9);
    fs::path p = dir / "glued.jpg";
    write_bytes(p, cut);
    REQUIRE_THAT(error_of(p), Catch::Contains(p.string()) && Catch::Contains("truncated JPEG"));
  }
  SECTION("damaged JPEG data: refused, not decoded to garbage") {
    // Flip bits in the entropy-coded data of a real photograph, never creating a 0xFF byte.
    fs::path photo = "/usr/share/darknet/data/dog.jpg";
    if (fs::exists(photo)) {
      std::ifstream in(photo, std::ios::binary);
      ByteVec bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      for (std::size_t i = 20000; i + 30 < bytes.size(); i += 997) {
        if (bytes[i] != 0xFF && bytes[i - 1] != 0xFF && (bytes[i] ^ 0x11) != 0xFF) bytes[i] ^= 0x11;
      }
      fs::path p = dir / "damaged.jpg";
      write_bytes(p, bytes);
      REQUIRE_THAT(error_of(p), Catch::Contains(p.string()) && Catch::Contains("corrupt JPEG"));
    }
  }
  SECTION("corrupt PNG data") {
    ByteVec bad = png;
    for (std::size_t i = 60; i < bad.size() - 20; i += 7) bad[i] ^= 0x5A;
    fs::path p = dir / "garbled.png";
    write_bytes(p, bad);
    REQUIRE_THAT(error_of(p), Catch::Contains(p.string()) && Catch::Contains("PNG"));
  }
  SECTION("more pixels than the limit, refused from the header alone") {
    fs::path p = dir / "bomb.png";
    write_bytes(p, png_header_only(100000, 100000));
    REQUIRE_THAT(error_of(p), Catch::Contains(p.string()) && Catch::Contains("100000x100000") &&
                                  Catch::Contains("exceeds the limit"));
    fs::path small = dir / "small.jpg";
    write_bytes(small, jpeg);
    ImageLimits tight;
    tight.max_pixels = 64 * 64 - 1;
    REQUIRE_THAT(error_of(small, tight), Catch::Contains("64x64"));
    tight.max_pixels = 64 * 64;
    REQUIRE(read_image_rgb(small, tight).cols == 64);
  }
  SECTION("not a regular file (a FIFO would block forever)") {
    fs::path p = dir / "pipe.jpg";
    REQUIRE(::mkfifo(p.c_str(), 0644) == 0);
    REQUIRE_THAT(error_of(p), Catch::Contains("not a regular file"));
  }
  SECTION("no read permission") {
    fs::path p = dir / "locked.jpg";
    write_bytes(p, jpeg);
    fs::permissions(p, fs::perms::none);
    int fd = ::open(p.c_str(), O_RDONLY);
    if (fd >= 0) {  // root reads anything: nothing to test here
      ::close(fd);
    } else {
      REQUIRE_THAT(error_of(p), Catch::Contains(p.string()) && Catch::Contains("ermission denied"));
    }
    fs::permissions(p, fs::perms::owner_all);
  }
}

TEST_CASE("decoder warnings do not reach stderr", "[image]") {
  fs::path dir = fresh_temp_dir("image_quiet");
  cv::Mat noise(64, 64, CV_8UC3);
  cv::randu(noise, 0, 256);
  ByteVec jpeg = encode(".jpg", noise);
  ByteVec cut(jpeg.begin(), jpeg.begin() + static_cast<std::ptrdiff_t>(jpeg.size() / 2));
  cut.push_back(0xFF);
  cut.push_back(0xD9);
  fs::path p = dir / "glued.jpg";
  write_bytes(p, cut);
  fs::path err = dir / "stderr.txt";
  std::fflush(stderr);
  int saved = ::dup(2);
  int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ::dup2(fd, 2);
  ::close(fd);
  std::string e = error_of(p);
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  REQUIRE_THAT(e, Catch::Contains("truncated JPEG"));
  REQUIRE(read_text_file(err).empty());
}

TEST_CASE("expand_image_inputs takes files, folders and lists, in order", "[image]") {
  fs::path dir = fresh_temp_dir("image_inputs");
  fs::create_directories(dir / "tree/sub");
  for (const char* f : {"tree/b.jpg", "tree/a.PNG", "tree/sub/c.webp", "tree/notes.txt", "tree/sub/d.tiff", "one.bmp"}) {
    write_text_file(dir / f, "x");
  }
  write_text_file(dir / "list.txt", "\xEF\xBB\xBF# a comment\n\n  one.bmp  \r\ntree/b.jpg\r\n" + (dir / "abs.jpg").string() + "\n");

  auto got = expand_image_inputs({(dir / "one.bmp").string(), (dir / "tree").string(), (dir / "list.txt").string()});
  std::vector<fs::path> want = {dir / "one.bmp",       dir / "tree/a.PNG", dir / "tree/b.jpg", dir / "tree/sub/c.webp",
                                dir / "tree/sub/d.tiff", dir / "one.bmp",   dir / "tree/b.jpg", dir / "abs.jpg"};
  REQUIRE(got == want);

  REQUIRE(expand_image_inputs({}).empty());
  fs::create_directories(dir / "empty");
  // A folder given explicitly that holds no images is an error naming it (not silently nothing).
  REQUIRE_THROWS_WITH(expand_image_inputs({(dir / "empty").string()}), Catch::Contains("empty") && Catch::Contains("no images"));
  REQUIRE_THROWS_WITH(expand_image_inputs({(dir / "missing.jpg").string()}),
                      Catch::Contains("missing.jpg") && Catch::Contains("no such file"));
  REQUIRE_THROWS_AS(expand_image_inputs({(dir / "missing.lst").string()}), InputError);

  CHECK(has_image_extension("x.JPEG"));
  CHECK(has_image_extension("x.tif"));
  CHECK_FALSE(has_image_extension("x.gif"));
  CHECK_FALSE(has_image_extension("jpg"));
}

TEST_CASE("JPEGs decode at the smallest DCT scale that covers min_side, in parallel, as OpenCV's reduced modes", "[image]") {
  fs::path photo = "/usr/share/darknet/data/dog.jpg";  // 768 x 576
  if (!fs::exists(photo)) photo = source_dir() / "datasets/samples/dog.jpg";
  if (!fs::exists(photo)) {
    WARN("no photograph found (darknet package not installed)");
    return;
  }
  const cv::Mat full = read_image_rgb(photo);
  ImageLimits limits;
  limits.min_side = 224;
  const cv::Mat half = read_image_rgb(photo, limits);  // 1/2: 288 >= 224; 1/4 would give 144
  REQUIRE(half.cols == (full.cols + 1) / 2);
  REQUIRE(half.rows == (full.rows + 1) / 2);
  // The same pixels as OpenCV's own 1/2-scale decode (libjpeg's scaling underneath).
  cv::Mat reduced = cv::imread(photo.string(), cv::IMREAD_REDUCED_COLOR_2), reduced_rgb;
  cv::cvtColor(reduced, reduced_rgb, cv::COLOR_BGR2RGB);
  REQUIRE(reduced_rgb.size() == half.size());
  REQUIRE(cv::norm(half, reduced_rgb, cv::NORM_INF) == 0);
  // And a faithful picture: close to the full decode shrunk by area averaging.
  cv::Mat shrunk;
  cv::resize(full, shrunk, half.size(), 0, 0, cv::INTER_AREA);
  REQUIRE(cv::norm(half, shrunk, cv::NORM_L1) / static_cast<double>(half.total() * 3) < 3.0);
  limits.min_side = 100;  // 1/4: 144 >= 100; 1/8 would give 72
  REQUIRE(read_image_rgb(photo, limits).cols == (full.cols + 3) / 4);
  limits.min_side = 577;  // larger than the image: full size
  REQUIRE(cv::norm(read_image_rgb(photo, limits), full, cv::NORM_INF) == 0);

  // Threads decode JPEGs at once (no process-wide lock) and get the same pixels.
  limits.min_side = 224;
  std::vector<cv::Mat> got(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) threads.emplace_back([&, i] { got[i] = read_image_rgb(photo, limits); });
  for (auto& t : threads) t.join();
  for (const auto& g : got) REQUIRE(cv::norm(g, half, cv::NORM_INF) == 0);
}
