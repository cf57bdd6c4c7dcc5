#include "satcap/train/training_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "satcap/model/bundle.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"

namespace fs = std::filesystem;

namespace satcap {

// ---------------------------------------------------------------------------------------------
// TrainingLog

TrainingLog::TrainingLog(const fs::path& path, int64_t keep_up_to_step) : path_(path) {
  std::error_code ec;
  if (keep_up_to_step >= 0 && fs::exists(path, ec)) {
    std::istringstream in(read_input_file(path, ExitCode::input));
    std::string line, text;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (record.is_discarded() || !record.is_object()) continue;  // a torn last line after a crash
      auto step = record.find("step");
      if (step != record.end() && step->is_number_integer() && step->get<int64_t>() > keep_up_to_step) continue;
      records_.push_back(record);
      text += record.dump() + "\n";
    }
    write_file_atomic(path, text);
  }
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (keep_up_to_step >= 0 ? O_APPEND : O_TRUNC), 0644);
  if (fd_ < 0) throw OutputError(path.string() + ": cannot open the training log for writing (" + errno_text() + ")");
}

TrainingLog::~TrainingLog() {
  if (fd_ >= 0) ::close(fd_);
}

void TrainingLog::write(const nlohmann::json& record) {
  records_.push_back(record);
  const std::string line = record.dump() + "\n";
  // One write() per record on an O_APPEND file: a crash leaves whole lines (and at most a torn last one).
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw OutputError(path_.string() + ": cannot write the training log (" + errno_text() + ")");
    done += static_cast<std::size_t>(n);
  }
}

// ---------------------------------------------------------------------------------------------
// ProgressBar

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}

ProgressBar::ProgressBar(int64_t total, int64_t start, bool quiet, int64_t plain_every)
    : total_(std::max<int64_t>(total, 1)),
      start_(start),
      plain_every_(std::max<int64_t>(plain_every, 1)),
      done_(start),
      quiet_(quiet),
      tty_(isatty(2) != 0),
      began_(std::chrono::steady_clock::now()),
      last_draw_(began_) {}

double ProgressBar::rate() const {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - began_).count();
  return elapsed > 0 ? static_cast<double>(done_ - start_) / elapsed : 0.0;
}

void ProgressBar::update(int64_t done, const std::string& note) {
  done_ = done;
  if (!note.empty()) note_ = note;
  if (quiet_) return;
  if (tty_) {
    auto now = std::chrono::steady_clock::now();
    if (done_ < total_ && drawn_ && now - last_draw_ < std::chrono::milliseconds(200)) return;
    last_draw_ = now;
    draw();
  } else if (done_ / plain_every_ != last_plain_ || done_ == total_) {
    last_plain_ = done_ / plain_every_;
    draw();
  }
}

void ProgressBar::draw() {
  double r = rate();
  double eta = r > 0 ? static_cast<double>(total_ - done_) / r : -1;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - began_).count();
  std::ostringstream line;
  if (tty_) {
    const int width = 30;
    int filled = static_cast<int>(width * std::min<double>(1.0, static_cast<double>(done_) / total_));
    line << "\r[" << std::string(filled, '=') << (filled < width ? ">" : "")
         << std::string(std::max(0, width - filled - 1), ' ') << "] ";
  }
  char rate_text[32];
  std::snprintf(rate_text, sizeof rate_text, "%.2f", r);
  line << done_ << "/" << total_ << " steps, " << rate_text << " steps/s, elapsed " << format_duration(elapsed)
       << ", ETA " << format_duration(eta);
  if (!note_.empty()) line << ", " << note_;
  if (tty_) {
    std::cerr << line.str() << "\x1b[K" << std::flush;
    drawn_ = true;
  } else {
    std::cerr << line.str() << "\n" << std::flush;
  }
}

void ProgressBar::message(const std::string& text) {
  if (quiet_) return;
  if (tty_ && drawn_) std::cerr << "\r\x1b[K";
  std::cerr << text << "\n";
  if (tty_ && drawn_) draw();
}

void ProgressBar::finish() {
  if (quiet_) return;
  if (tty_ && drawn_) {
    draw();
    std::cerr << "\n";
    drawn_ = false;
  }
}

// ---------------------------------------------------------------------------------------------
// The plot

namespace {

struct Series {
  std::string label;
  cv::Scalar colour;  // BGR
  std::vector<cv::Point2d> points;
};

std::string format_tick(double v) {
  char buf[32];
  double a = std::fabs(v);
  if (a != 0 && (a >= 1e5 || a < 1e-2))
    std::snprintf(buf, sizeof buf, "%.1e", v);
  else if (a >= 100)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// One panel: axes, 5 ticks each way, a legend, the series as polylines (points as dots when few).
void draw_panel(cv::Mat& img, cv::Rect area, const std::string& title, const std::string& xlabel,
                const std::vector<Series>& series) {
  const cv::Scalar black(0, 0, 0), grey(200, 200, 200);
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  cv::Rect plot(area.x + 70, area.y + 40, area.width - 90, area.height - 90);
  cv::putText(img, title, {area.x + 70, area.y + 25}, font, 0.6, black, 1, cv::LINE_AA);
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (auto& s : series)
    for (auto& p : s.points) {
      x0 = std::min(x0, p.x), x1 = std::max(x1, p.x);
      y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
    }
  cv::rectangle(img, plot, black, 1);
  cv::putText(img, xlabel, {plot.x + plot.width / 2 - 20, plot.y + plot.height + 40}, font, 0.5, black, 1,
              cv::LINE_AA);
  if (!std::isfinite(x0)) {
    cv::putText(img, "no data yet", {plot.x + 20, plot.y + plot.height / 2}, font, 0.5, black, 1, cv::LINE_AA);
    return;
  }
  if (x1 == x0) x0 -= 1, x1 += 1;
  if (y1 == y0) y0 -= 0.5, y1 += 0.5;
  double pad = (y1 - y0) * 0.05;
  y0 -= pad, y1 += pad;
  auto to_px = [&](cv::Point2d p) {
    return cv::Point(plot.x + static_cast<int>((p.x - x0) / (x1 - x0) * plot.width),
                     plot.y + plot.height - static_cast<int>((p.y - y0) / (y1 - y0) * plot.height));
  };
  for (int i = 0; i <= 4; ++i) {
    double fy = y0 + (y1 - y0) * i / 4, fx = x0 + (x1 - x0) * i / 4;
    int py = plot.y + plot.height - plot.height * i / 4, px = plot.x + plot.width * i / 4;
    cv::line(img, {plot.x, py}, {plot.x + plot.width, py}, grey, 1);
    cv::putText(img, format_tick(fy), {area.x + 5, py + 4}, font, 0.4, black, 1, cv::LINE_AA);
    cv::line(img, {px, plot.y + plot.height}, {px, plot.y + plot.height + 5}, black, 1);
    cv::putText(img, format_tick(fx), {px - 15, plot.y + plot.height + 20}, font, 0.4, black, 1, cv::LINE_AA);
  }
  int legend_y = plot.y + 15;
  for (auto& s : series) {
    for (std::size_t i = 1; i < s.points.size(); ++i)
      cv::line(img, to_px(s.points[i - 1]), to_px(s.points[i]), s.colour, 2, cv::LINE_AA);
    if (s.points.size() < 40)
      for (auto& p : s.points) cv::circle(img, to_px(p), 3, s.colour, cv::FILLED, cv::LINE_AA);
    cv::line(img, {plot.x + plot.width - 130, legend_y - 4}, {plot.x + plot.width - 105, legend_y - 4}, s.colour, 2);
    cv::putText(img, s.label, {plot.x + plot.width - 100, legend_y}, font, 0.45, black, 1, cv::LINE_AA);
    legend_y += 18;
  }
}

}  // namespace

void plot_training_curves(const std::vector<nlohmann::json>& records, const fs::path& png) {
  Series loss{"train loss", {200, 80, 20}, {}}, nll{"train NLL", {60, 160, 60}, {}};
  Series bleu4{"val BLEU-4", {30, 30, 220}, {}}, bleu1{"val BLEU-1", {160, 120, 240}, {}};
  for (auto& r : records) {
    auto kind = r.value("kind", std::string());
    auto num = [&](const char* key, double& v) {
      auto it = r.find(key);
      if (it == r.end() || !it->is_number()) return false;
      v = it->get<double>();
      return std::isfinite(v);
    };
    double step = 0, epoch = 0, v = 0;
    if (kind == "train" && num("step", step)) {
      if (num("loss", v)) loss.points.push_back({step, v});
      if (num("nll", v)) nll.points.push_back({step, v});
    } else if (kind == "val" && num("epoch", epoch)) {
      if (num("bleu4", v)) bleu4.points.push_back({epoch, v});
      if (num("bleu1", v)) bleu1.points.push_back({epoch, v});
    }
  }
  cv::Mat img(420, 1000, CV_8UC3, cv::Scalar(255, 255, 255));
  draw_panel(img, {0, 0, 500, 420}, "training loss", "step", {loss, nll});
  draw_panel(img, {500, 0, 500, 420}, "validation (decoded captions)", "epoch", {bleu4, bleu1});
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", img, bytes)) throw OutputError(png.string() + ": cannot encode the plot as PNG");
  write_file_atomic(png, std::string(bytes.begin(), bytes.end()));
}

}  // namespace satcap
