// The attention overlays and the HTML gallery: maps peak where attention was put, the mask is
// bright there and dark elsewhere, files come out one per word with safe names, failures to write
// are OutputError, and the gallery page renders in headless Chromium with every picture decoded.
#include "testing.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <stdexcept>

#include "satcap/data/image.h"
#include "satcap/runtime/error.h"
#include "satcap/viz/gallery.h"
#include "satcap/viz/overlay.h"
#include "test_util.h"

using namespace satcap;
namespace fs = std::filesystem;

namespace {

std::vector<float> one_hot(int rows, int cols, int r, int c) {
  std::vector<float> a(static_cast<std::size_t>(rows * cols), 0.f);
  a[static_cast<std::size_t>(r * cols + c)] = 1.f;
  return a;
}

// A Gaussian blob of attention centred at (r0, c0) in grid cells, summing to 1.
std::vector<float> blob(int rows, int cols, double r0, double c0, double s) {
  std::vector<float> a(static_cast<std::size_t>(rows * cols));
  double sum = 0;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      double v = std::exp(-((r - r0) * (r - r0) + (c - c0) * (c - c0)) / (2 * s * s));
      a[static_cast<std::size_t>(r * cols + c)] = static_cast<float>(v);
      sum += v;
    }
  for (auto& v : a) v = static_cast<float>(v / sum);
  return a;
}

cv::Mat grey_image(int w, int h, int level = 128) { return cv::Mat(h, w, CV_8UC3, cv::Scalar(level, level, level)); }

// Pixel rectangle of grid cell (r, c) over an image of `size`.
cv::Rect cell_rect(cv::Size size, int rows, int cols, int r, int c) {
  int x0 = c * size.width / cols, x1 = (c + 1) * size.width / cols;
  int y0 = r * size.height / rows, y1 = (r + 1) * size.height / rows;
  return cv::Rect(x0, y0, x1 - x0, y1 - y0);
}

CaptionedImage fake_caption(cv::Mat rgb, std::vector<std::string> words, int rows = 14, int cols = 14) {
  CaptionedImage ci;
  ci.image_path = "fake.jpg";
  ci.rgb = std::move(rgb);
  ci.grid_rows = rows;
  ci.grid_cols = cols;
  ci.words = std::move(words);
  for (std::size_t t = 0; t < ci.words.size(); ++t)
    ci.alpha.push_back(blob(rows, cols, static_cast<double>(t % rows), static_cast<double>((3 * t) % cols), 1.0));
  ci.score = -4.25;
  return ci;
}

struct ChromiumResult {
  int status = -1;
  std::string out;
};

std::string chromium_path() {
  if (const char* env = std::getenv("SATCAP_CHROMIUM")) return env;
  return "/usr/bin/chromium";
}

// Runs headless Chromium on a local file with a fresh profile; `mode` is "--dump-dom" or a
// "--screenshot=..." argument. Paths come from the test tree (no shell metacharacters).
ChromiumResult run_chromium(const fs::path& html, const std::string& hash, const std::string& mode,
                            const fs::path& work) {
  const fs::path profile = work / "chromium-profile";
  fs::remove_all(profile);
  fs::create_directories(profile);
  const fs::path out = work / "chromium.out", err = work / "chromium.err";
  std::string cmd = "timeout 180 '" + chromium_path() +
                    "' --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                    "--disable-background-networking --disable-component-update --disable-sync "
                    "--user-data-dir='" + profile.string() + "' --virtual-time-budget=5000 " + mode +
                    " 'file://" + fs::absolute(html).string() + hash + "' >'" + out.string() + "' 2>'" + err.string() + "'";
  ChromiumResult r;
  r.status = std::system(cmd.c_str());
  r.out = read_text_file(out);
  return r;
}

}  // namespace

TEST_CASE("attention_map peaks in the attended cell, is smooth, image-sized and in [0, 1]", "[overlay]") {
  struct Case { int rows, cols, r, c; cv::Size size; };
  for (const Case& k : {Case{14, 14, 5, 9, cv::Size(224, 224)}, Case{14, 14, 0, 0, cv::Size(224, 224)},
                        Case{14, 14, 13, 13, cv::Size(300, 200)}, Case{7, 10, 3, 2, cv::Size(333, 251)},
                        Case{8, 8, 7, 0, cv::Size(64, 512)}}) {
    CAPTURE(k.rows, k.cols, k.r, k.c, k.size.width, k.size.height);
    cv::Mat map = attention_map(one_hot(k.rows, k.cols, k.r, k.c), k.rows, k.cols, k.size);
    REQUIRE(map.type() == CV_32F);
    REQUIRE(map.size() == k.size);
    double lo, hi;
    cv::Point at;
    cv::minMaxLoc(map, &lo, &hi, nullptr, &at);
    REQUIRE(lo >= 0.0);
    REQUIRE(hi == Approx(1.0));
    REQUIRE(cell_rect(k.size, k.rows, k.cols, k.r, k.c).contains(at));
    // Smooth: neighbouring pixels differ by a small fraction of the range (a blocky nearest-neighbour
    // upsampling would jump by 1 at the cell's edge).
    cv::Mat dx, dy;
    cv::absdiff(map.colRange(1, map.cols), map.colRange(0, map.cols - 1), dx);
    cv::absdiff(map.rowRange(1, map.rows), map.rowRange(0, map.rows - 1), dy);
    double mdx, mdy;
    cv::minMaxLoc(dx, nullptr, &mdx);
    cv::minMaxLoc(dy, nullptr, &mdy);
    const double cell_px = std::min(static_cast<double>(k.size.width) / k.cols,
                                    static_cast<double>(k.size.height) / k.rows);
    REQUIRE(std::max(mdx, mdy) < 2.0 / cell_px);
    // Far from the attended cell the map has fallen off.
    const cv::Point far(k.c < k.cols / 2 ? k.size.width - 1 : 0, k.r < k.rows / 2 ? k.size.height - 1 : 0);
    REQUIRE(map.at<float>(far) < 0.05f);
  }
}

TEST_CASE("attention_map handles flat, zero and broken weights and refuses a wrong grid", "[overlay]") {
  cv::Mat flat = attention_map(std::vector<float>(196, 1.f / 196), 14, 14, cv::Size(224, 224));
  double lo, hi;
  cv::minMaxLoc(flat, &lo, &hi);
  REQUIRE(lo > 0.99);  // uniform attention: the whole image is equally bright
  cv::Mat zero = attention_map(std::vector<float>(196, 0.f), 14, 14, cv::Size(50, 40));
  REQUIRE(cv::countNonZero(zero) == 0);
  std::vector<float> broken = one_hot(14, 14, 2, 2);
  broken[5] = std::nanf("");
  broken[6] = -3.f;
  broken[7] = INFINITY;
  cv::Mat m = attention_map(broken, 14, 14, cv::Size(112, 112));
  REQUIRE(cv::checkRange(m, true, nullptr, 0.0, 1.0 + 1e-6));
  REQUIRE_THROWS_AS(attention_map(std::vector<float>(195, 0.f), 14, 14, cv::Size(224, 224)), std::invalid_argument);
  REQUIRE_THROWS_AS(attention_map(std::vector<float>(196, 0.f), 14, 14, cv::Size(0, 224)), std::invalid_argument);
  // Without smoothing the map is the bilinear upsampling alone: still peaked in the cell.
  cv::Point at;
  cv::Mat sharp = attention_map(one_hot(14, 14, 4, 4), 14, 14, cv::Size(224, 224), 0.0);
  cv::minMaxLoc(sharp, nullptr, nullptr, nullptr, &at);
  REQUIRE(cell_rect({224, 224}, 14, 14, 4, 4).contains(at));
}

TEST_CASE("the mask style is bright where attended and dark elsewhere, heat is coloured", "[overlay]") {
  cv::Mat img(224, 224, CV_8UC3);
  cv::RNG rng(7);
  rng.fill(img, cv::RNG::UNIFORM, 40, 200);
  const cv::Rect cell = cell_rect(img.size(), 14, 14, 6, 10);
  cv::Mat map = attention_map(one_hot(14, 14, 6, 10), 14, 14, img.size());
  OverlayOptions mask;
  cv::Mat out = draw_attention(img, map, mask);
  REQUIRE(out.size() == img.size());
  REQUIRE(out.type() == CV_8UC3);
  cv::Mat grey;
  cv::cvtColor(out, grey, cv::COLOR_RGB2GRAY);
  cv::Mat outside_mask(img.size(), CV_8U, cv::Scalar(255));
  outside_mask(cv::Rect(cell.x - 40, cell.y - 40, cell.width + 80, cell.height + 80) & cv::Rect({}, img.size()))
      .setTo(0);
  const double inside = cv::mean(grey(cell))[0], outside = cv::mean(grey, outside_mask)[0];
  CAPTURE(inside, outside);
  REQUIRE(inside > 200.0);         // ~ 0.2 * 120 + 0.8 * 255
  REQUIRE(outside < 0.3 * 120 + 15);  // ~ 0.2 * image
  // The paper's formula at the peak: 0.2 * image + 0.8 * 255 per channel.
  cv::Point at;
  cv::minMaxLoc(map, nullptr, nullptr, nullptr, &at);
  for (int ch = 0; ch < 3; ++ch)
    REQUIRE(std::abs(out.at<cv::Vec3b>(at)[ch] - (0.2 * img.at<cv::Vec3b>(at)[ch] + 0.8 * 255)) <= 1.0);

  // On a grey picture the mask stays grey; the heat map is red at the peak and blue far away.
  cv::Mat g = grey_image(224, 224);
  cv::Mat m = draw_attention(g, map, mask);
  OverlayOptions heat;
  heat.style = OverlayStyle::heat;
  cv::Mat h = draw_attention(g, map, heat);
  cv::Vec3b mp = m.at<cv::Vec3b>(at), hp = h.at<cv::Vec3b>(at), hf = h.at<cv::Vec3b>(0, 0);
  REQUIRE((mp[0] == mp[1] && mp[1] == mp[2]));
  REQUIRE(hp[0] > hp[2] + 40);  // RGB: red over blue at the peak
  REQUIRE(hf[2] > hf[0] + 40);  // blue over red far away
  REQUIRE(effective_opacity(heat) == Approx(0.5));
  REQUIRE(effective_opacity(mask) == Approx(0.8));
}

TEST_CASE("overlay options and captioned images are validated", "[overlay]") {
  OverlayOptions o;
  REQUIRE_NOTHROW(validate(o));
  REQUIRE_THROWS_WITH(parse_enum<OverlayStyle>("glow", "overlay style"), Catch::Contains("glow"));
  REQUIRE_THROWS_AS(parse_enum<OverlayStyle>("glow", "overlay style"), UsageError);
  o = {};
  o.opacity = 1.5;
  REQUIRE_THROWS_AS(validate(o), UsageError);
  o = {};
  o.tile_size = 0;
  REQUIRE_THROWS_AS(validate(o), UsageError);
  o = {};
  o.tiles_per_row = 0;
  REQUIRE_THROWS_AS(validate(o), UsageError);
  o = {};
  o.sigma_cells = -1;
  REQUIRE_THROWS_AS(validate(o), UsageError);

  CaptionedImage ci = fake_caption(grey_image(64, 48), {"a", "cat"});
  REQUIRE_NOTHROW(validate(ci));
  auto bad = ci;
  bad.alpha.pop_back();
  REQUIRE_THROWS_AS(validate(bad), std::invalid_argument);
  bad = ci;
  bad.alpha[1].resize(195);
  REQUIRE_THROWS_AS(validate(bad), std::invalid_argument);
  bad = ci;
  bad.sampled = {{3}, {196}};
  REQUIRE_THROWS_AS(validate(bad), std::invalid_argument);
  bad = ci;
  bad.rgb = cv::Mat(48, 64, CV_8UC1, cv::Scalar(0));
  REQUIRE_THROWS_AS(validate(bad), std::invalid_argument);
}

TEST_CASE("overlays are written one per word plus the figure, with safe names and the right sizes",
          "[overlay]") {
  const fs::path dir = fresh_temp_dir("overlay_files") / "out";
  const std::vector<std::string> words{"a", "../etc/passwd", "<script>", "café", "", "a b", ".", "dog"};
  CaptionedImage ci = fake_caption(grey_image(320, 240), words);
  OverlayOptions opts;
  opts.max_side = 200;
  opts.tile_size = 100;
  RenderedOverlays r = render_overlays(ci, opts);
  REQUIRE(r.image.size() == cv::Size(200, 150));
  OverlayFiles files = write_overlays(ci, r, dir, opts);
  REQUIRE(files.words.size() == words.size());
  REQUIRE(files.video.empty());
  std::size_t count = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    (void)entry;
    ++count;
  }
  REQUIRE(count == words.size() + 1);  // nothing else (no temporary files) left behind
  const std::regex safe("[0-9]{2}_[A-Za-z0-9_-]{1,40}\\.png");
  for (std::size_t t = 0; t < words.size(); ++t) {
    CAPTURE(t, words[t], files.words[t].string());
    REQUIRE(files.words[t].parent_path() == dir);
    REQUIRE(std::regex_match(files.words[t].filename().string(), safe));
    cv::Mat back = cv::imread(files.words[t].string());
    REQUIRE(back.size() == cv::Size(200, 150));
  }
  REQUIRE(files.words[0].filename() == "01_a.png");
  REQUIRE(files.words[7].filename() == "08_dog.png");
  REQUIRE(safe_file_name("") == "word");
  REQUIRE(safe_file_name(std::string(100, 'x')).size() == 40);
  // 9 tiles (image + 8 words) of 100x75 in rows of 6: two rows.
  cv::Mat fig = cv::imread(files.figure.string());
  REQUIRE(files.figure == dir / "figure.png");
  REQUIRE(fig.cols >= 6 * 100);
  REQUIRE(fig.cols < 6 * 100 + 7 * 10);
  REQUIRE(fig.rows >= 2 * 75);
  REQUIRE(fig.rows < 2 * 75 + 3 * 10);
  // Rows of at most 3 tiles: three rows.
  opts.tiles_per_row = 3;
  REQUIRE(render_overlays(ci, opts).figure.rows >= 3 * 75);
}

TEST_CASE("hard attention samples are marked at the sampled regions", "[overlay]") {
  CaptionedImage ci = fake_caption(grey_image(224, 224), {"one", "two"});
  ci.sampled = {{0}, {1 * 14 + 12, 1 * 14 + 12, 13 * 14}};
  OverlayOptions opts;
  opts.max_side = 224;
  opts.label_words = false;
  RenderedOverlays with = render_overlays(ci, opts);
  opts.draw_samples = false;
  RenderedOverlays without = render_overlays(ci, opts);
  auto reddish = [](const cv::Mat& img, cv::Rect roi) {
    int n = 0;
    for (int y = roi.y; y < roi.y + roi.height; ++y)
      for (int x = roi.x; x < roi.x + roi.width; ++x) {
        cv::Vec3b p = img.at<cv::Vec3b>(y, x);
        n += p[0] > 180 && p[1] < 120 && p[2] < 120;
      }
    return n;
  };
  REQUIRE(reddish(with.words[1], cell_rect({224, 224}, 14, 14, 1, 12)) > 0);
  REQUIRE(reddish(with.words[1], cell_rect({224, 224}, 14, 14, 13, 0)) > 0);
  REQUIRE(reddish(with.words[1], cell_rect({224, 224}, 14, 14, 7, 7)) == 0);
  REQUIRE(reddish(without.words[1], cell_rect({224, 224}, 14, 14, 1, 12)) == 0);
}

TEST_CASE("an unwritable output folder is an OutputError naming it", "[overlay]") {
  const fs::path base = fresh_temp_dir("overlay_unwritable");
  write_text_file(base / "file.txt", "not a folder");
  CaptionedImage ci = fake_caption(grey_image(64, 64), {"a", "cat"});
  const fs::path dir = base / "file.txt" / "sub";
  REQUIRE_THROWS_AS(write_overlays(ci, dir, OverlayOptions{}), OutputError);
  REQUIRE_THROWS_WITH(write_overlays(ci, dir, OverlayOptions{}), Catch::Contains(dir.string()));
  REQUIRE_THROWS_AS(write_gallery(dir / "gallery.html", {}), OutputError);
  REQUIRE_THROWS_AS(write_image_rgb(base / "x.gif", ci.rgb), OutputError);
  // A folder where the file should be: OutputError naming the file.
  fs::create_directories(base / "taken.png");
  REQUIRE_THROWS_WITH(write_image_rgb(base / "taken.png", ci.rgb), Catch::Contains("taken.png"));
}

TEST_CASE("a Motion JPEG video steps through the words", "[overlay]") {
  const fs::path dir = fresh_temp_dir("overlay_video");
  cv::Mat noise(120, 160, CV_8UC3);
  cv::RNG(3).fill(noise, cv::RNG::UNIFORM, 0, 256);
  CaptionedImage ci = fake_caption(noise, {"a", "noisy", "square"});
  OverlayOptions opts;
  opts.write_video = true;
  opts.max_side = 160;
  OverlayFiles files = write_overlays(ci, dir, opts);
  REQUIRE(files.video == dir / "words.avi");
  REQUIRE(fs::file_size(files.video) > 1000);
  cv::VideoCapture cap(files.video.string());  // FFmpeg where present, else OpenCV's own reader
  REQUIRE(cap.isOpened());
  int frames = 0;
  cv::Mat frame;
  while (cap.read(frame)) {
    REQUIRE(frame.size() == cv::Size(160, 120));
    ++frames;
  }
  REQUIRE(frames == 4 * 2);  // the image and 3 words, 1 s each at 2 frames a second
}

// The demo: a made-up attention sequence on darknet's dog photo (the dog bottom left, the bicycle
// in the middle, the truck top right), written where you can look at it:
// build/test-tmp/overlay_demo/{dog/*.png, dog_heat/*.png, gallery.html, gallery.png}.
TEST_CASE("the gallery page renders in headless Chromium with every picture loaded", "[overlay][gallery]") {
  const fs::path dir = fresh_temp_dir("overlay_demo");
  const fs::path dog_path = "/usr/share/darknet/data/dog.jpg";
  REQUIRE(fs::exists(dog_path));  // installed by tools/setup.sh (Debian package darknet)
  CaptionedImage dog;
  dog.image_path = dog_path.string();
  dog.rgb = read_image_rgb(dog_path);
  dog.grid_rows = dog.grid_cols = 14;
  // Centres in grid cells (row, col) for each word.
  const std::vector<std::pair<std::string, std::pair<double, double>>> seq{
      {"a", {7, 7}},      {"dog", {9.5, 3.5}}, {"sitting", {10.5, 4}}, {"next", {7, 6}},
      {"to", {7, 6}},     {"a", {7, 6}},       {"bicycle", {6.5, 6}},  {"near", {3, 10}},
      {"a", {3, 10}},     {"truck", {2.5, 10.5}}};
  for (const auto& [word, rc] : seq) {
    dog.words.push_back(word);
    dog.alpha.push_back(blob(14, 14, rc.first, rc.second, word.size() <= 2 ? 3.0 : 1.2));
  }
  dog.score = -7.125;
  dog.alternatives = {{"a dog sitting in front of a bicycle", -8.5}, {"a dog and a bike", -9.25}};
  OverlayOptions opts;
  opts.write_video = true;
  RenderedOverlays r = render_overlays(dog, opts);
  write_overlays(dog, r, dir / "dog", opts);
  OverlayOptions heat;
  heat.style = OverlayStyle::heat;
  write_overlays(dog, dir / "dog_heat", heat);

  // A second entry with hostile text everywhere.
  CaptionedImage evil = fake_caption(grey_image(120, 90), {"<b>bold</b>", "a&b", "\"quote\"", "'"}, 7, 7);
  evil.image_path = "dir/<img src=x onerror=alert(1)>.jpg";
  evil.alternatives = {{"<script>document.body.dataset.pwned=1</script>", -1.0}};
  RenderedOverlays re = render_overlays(evil, opts);

  const fs::path html = dir / "gallery.html";
  write_gallery(html, {make_gallery_entry(dog, r), make_gallery_entry(evil, re)});
  const std::string page = read_text_file(html);
  REQUIRE(page.find("http://") == std::string::npos);  // self-contained: nothing fetched
  REQUIRE(page.find("https://") == std::string::npos);
  REQUIRE(page.find("<b>bold") == std::string::npos);
  REQUIRE(page.find("<img src=x") == std::string::npos);

  if (!fs::exists(chromium_path()))
    FAIL("Chromium is not installed at " << chromium_path()
                                         << ": run tools/setup.sh (it installs the Debian package chromium), "
                                            "or set SATCAP_CHROMIUM to a Chromium binary");
  // Opened with the dog's last word ("truck") pinned: its overlay replaces the image.
  ChromiumResult dom = run_chromium(html, "#word=0-9", "--dump-dom", dir);
  INFO("chromium output: " << read_text_file(dir / "chromium.err").substr(0, 2000));
  REQUIRE(dom.status == 0);
  const int expected = 1 + 10 + 1 + 4;  // pictures: each image and each word's overlay
  REQUIRE_THAT(dom.out, Catch::Contains("data-images-ok=\"" + std::to_string(expected) + "/" +
                                        std::to_string(expected) + "\""));
  REQUIRE_THAT(dom.out, Catch::Contains("data-caption=\"a dog sitting next to a bicycle near a truck\""));
  REQUIRE_THAT(dom.out, Catch::Contains(">bicycle</span>"));
  REQUIRE_THAT(dom.out, Catch::Contains("a dog sitting in front of a bicycle"));
  REQUIRE_THAT(dom.out, Catch::Contains("&lt;b&gt;bold&lt;/b&gt;"));
  REQUIRE_THAT(dom.out, Catch::Contains("&lt;script&gt;document.body.dataset.pwned=1&lt;/script&gt;"));
  REQUIRE_THAT(dom.out, !Catch::Contains("data-pwned"));
  REQUIRE_THAT(dom.out, Catch::Contains("data-showing=\"9\""));
  REQUIRE_THAT(dom.out, Catch::Contains("class=\"word pinned\""));
  REQUIRE_THAT(dom.out, Catch::Contains("data-showing=\"image\""));  // the other entry is untouched

  ChromiumResult shot =
      run_chromium(html, "#word=0-1", "--window-size=1200,900 --screenshot='" + (dir / "gallery.png").string() + "'", dir);
  REQUIRE(shot.status == 0);
  cv::Mat png = cv::imread((dir / "gallery.png").string());
  REQUIRE(png.cols == 1200);
  REQUIRE(png.rows == 900);
}
