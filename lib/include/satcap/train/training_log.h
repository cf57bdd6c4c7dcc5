// What training shows and leaves behind besides the model: a JSONL log of every metric, a progress
// bar on a terminal (plain lines otherwise), and a PNG of the loss and BLEU curves drawn with OpenCV.
// No torch here.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace satcap {

// An append-only JSON-lines file: one object per line ({"kind": "train", "step": .., ...}).
// Each record is flushed as it is written, so a crash loses nothing already logged.
class TrainingLog {
 public:
  // Opens `path` for appending; when `keep_up_to_step` >= 0 (a resume), records of a later step
  // (written after the checkpoint that is resumed) are dropped first, so the log matches the
  // weights. Throws OutputError when the file cannot be written.
  explicit TrainingLog(const std::filesystem::path& path, int64_t keep_up_to_step = -1);
  ~TrainingLog();
  TrainingLog(const TrainingLog&) = delete;
  TrainingLog& operator=(const TrainingLog&) = delete;
  void write(const nlohmann::json& record);
  // Every record written so far (including those from before a resume).
  const std::vector<nlohmann::json>& records() const { return records_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::vector<nlohmann::json> records_;
};

// Progress of a known number of steps on stderr: a redrawn bar with rate and ETA when stderr is
// a terminal, otherwise one plain line every `plain_every` steps. Silent when `quiet`.
class ProgressBar {
 public:
  ProgressBar(int64_t total, int64_t start, bool quiet, int64_t plain_every = 100);
  // `done` steps are done in total; `note` is appended (e.g. "loss 2.31").
  void update(int64_t done, const std::string& note = "");
  // A message on its own line (the bar is redrawn after it).
  void message(const std::string& text);
  void finish();
  // Steps per second since construction.
  double rate() const;

 private:
  int64_t total_, start_, plain_every_, last_plain_ = -1, done_ = 0;
  bool quiet_, tty_, drawn_ = false;
  std::chrono::steady_clock::time_point began_, last_draw_;
  std::string note_;
  void draw();
};

// "1:02:03" / "02:03" for a number of seconds.
std::string format_duration(double seconds);

// Draws train loss against steps (left) and validation BLEU-4 (and BLEU-1) against epochs (right)
// from the log's records into a PNG, written atomically. OutputError when it cannot be written.
void plot_training_curves(const std::vector<nlohmann::json>& records, const std::filesystem::path& png);

}  // namespace satcap
