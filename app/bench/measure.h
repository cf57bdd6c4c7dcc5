// The benchmark harness inside (private to app/bench): what run_bench (bench.cpp) strings together.
// A run's settings are one BenchRun (the options, the plan of sizes and parts, device, threads,
// scratch folder, log, Python); each measurement adds its section and flat keys to the report.
//   plan.cpp      BenchOptions::validate, the sizes and parts of each mode, the COCO-scale model
//   machine.cpp   the machine's facts for the report (CPU, BLAS, versions) and the clocks
//   children.cpp  child processes: their output, time and peak memory (from /proc)
//   python.cpp    the Python interpreter and the tools/bench scripts
//   sgemm.cpp     the machine's limit: the best fp32 matrix-product rate
//   train.cpp     the training step, satcap's against the Python scripts', and its caption lengths
//   flops.cpp     the training step's counted FLOPs
//   beam.cpp      batched beam search against the per-image Python one
//   prepare.cpp   the encoder pipeline against the bare network forward
//   growth.cpp    prepare and one training epoch at two dataset sizes (child satcap processes)
//   ops.cpp       the ATen operations per decoder time step of the device-generic training step
//   dist.cpp      1 process vs 2 data-parallel processes (--nproc 2): words/s, scaling efficiency
//   report.cpp    ratios, the targets and the table
#pragma once

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench.h"

namespace satcap::bench {

using nlohmann::json;

// Progress lines ("[bench] ...") to a stream, or nowhere.
struct Logger {
  std::ostream* out = nullptr;
  template <class... Args>
  void operator()(const Args&... args) const {
    if (!out) return;
    std::ostringstream line;
    (line << ... << args);
    *out << "[bench] " << line.str() << std::endl;
  }
};

// ---------------------------------------------------------------------------------------------
// plan.cpp

// The sizes of one run (the mode's, with the options' overrides) and the parts it runs.
struct Plan {
  std::string mode;                             // "full", "quick" or "smoke"
  DecoderOptions shape = coco_scale_decoder();  // training and beam search model (COCO scale unless smoke)
  std::vector<int64_t> train_batches;   // satcap's batches
  std::vector<int64_t> python_batches;  // the Python scripts' batches (a subset of train_batches)
  // Full runs time 10 steps of satcap (about a second each at COCO scale on 2 cores) and 5 of
  // Python: with 3 each, repeated runs on a shared 2-core machine moved by 20%.
  int train_warmup = 1, train_steps = 10;
  int python_warmup = 1, python_steps = 5;
  double sgemm_seconds = 1.0;  // time per product shape
  std::vector<std::array<int64_t, 3>> sgemm_shapes;  // {M, K, N}
  int64_t beam_images = 200, python_beam_images = 200;
  int64_t beam_max_len = 20;
  std::vector<int64_t> beams = {1, 3, 5};
  int64_t prepare_images = 256, prepare_batch = 32;
  std::vector<int64_t> growth_sizes = {2000, 20000};
  // The parts to run: those named by --only, else all but growth, which full mode adds (and
  // growth only with sizes to run).
  bool sgemm = true, train = true, python = true, beam = true, prepare = true, growth = false, ops = true;
  bool dist = false;  // data-parallel scaling: only when named (--only dist)
};

Plan make_plan(const BenchOptions& options);

// The Python interpreter and the scripts' folder (find_python, python.cpp).
struct Python {
  std::string interpreter, scripts_dir, error;  // error: why it cannot run
  bool ok() const { return error.empty(); }
};

// ---------------------------------------------------------------------------------------------
// What every measurement reads.

struct BenchRun {
  const BenchOptions& options;
  Plan plan;
  c10::Device device;
  Precision precision;
  int threads;  // LibTorch's intra-op threads here; the Python scripts and the growth runs get as many
  std::filesystem::path work;  // scratch folder for generated datasets and stores
  Logger log;
  Python python;  // found when the Python comparisons or the beam search run
};

// ---------------------------------------------------------------------------------------------
// machine.cpp

// The report's "machine" object: CPU, cores, threads, BLAS (summary and detail), LibTorch, device,
// satcap.
json machine_facts(const BenchRun& run);

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU seconds this process has used (all threads). With --threads 1 on a busy machine, work per
// CPU second is a steadier figure than work per wall second.
double process_cpu_seconds();

// Waits for the device's queued work (CUDA); nothing on the CPU.
void sync(const c10::Device& device);

struct Timing {
  double seconds = 0;      // wall clock
  double cpu_seconds = 0;  // this process's CPU time
};

// Runs `work` once, timed by both clocks, the device synchronised before and after.
template <class F>
Timing timed(const c10::Device& device, F&& work) {
  sync(device);
  const double cpu0 = process_cpu_seconds();
  const auto start = Clock::now();
  work();
  sync(device);
  Timing t;
  t.seconds = seconds_since(start);
  t.cpu_seconds = process_cpu_seconds() - cpu0;
  return t;
}

// ---------------------------------------------------------------------------------------------
// children.cpp

struct ChildRun {
  int exit_code = -1;    // -1 when it did not exit normally (killed by a signal)
  std::string out, err;  // captured stdout and stderr
  double seconds = 0;
  long max_rss_kib = 0;  // the child's own peak resident set (sampled VmHWM; see run_child)
  // The largest anonymous (heap) and file-backed (the program's libraries, about 130 MiB of
  // LibTorch, and mapped files such as the feature store) parts of the resident set seen in the
  // samples: what the peak is made of (not exact peaks themselves).
  long max_rss_anon_kib = 0, max_rss_file_kib = 0;
};

// Runs argv[0] with argv (no shell) in `cwd`, capturing stdout and stderr.
ChildRun run_child(const std::vector<std::string>& argv, const std::string& cwd = "");

// The last `n` lines of `text`.
std::string last_lines(const std::string& text, std::size_t n);

// "`what` exited with CODE: " and the last lines of its stderr.
std::string exit_message(const std::string& what, const ChildRun& run);

// ---------------------------------------------------------------------------------------------
// python.cpp

// The interpreter and the scripts' folder, checked (python_error and a log line when they cannot
// run); notes the interpreter in the report's machine facts.
Python find_python(const BenchOptions& options, json& report, const Logger& log);

// Runs one script with the model's sizes, the threads and the device, then `args`; returns its
// JSON line (with the script's peak memory, max_rss_mib), or {"error": ...}.
json run_script(const BenchRun& run, const std::string& script, const std::vector<std::string>& args,
                const DecoderOptions& shape);

// Whether a script's result is a measurement: an error goes to the log; a measurement's torch
// version to the report's machine facts.
bool script_succeeded(const json& result, json& report, const Logger& log);

// ---------------------------------------------------------------------------------------------
// The measurements, in the order run_bench runs them. Each adds its section and flat keys to `report`.

// sgemm.cpp: the peak ("sgemm_gflops", "sgemm"); returns it.
double bench_sgemm(const BenchRun& run, json& report);
// sgemm.cpp: the peak again after the training steps; the better one is "sgemm_gflops" and returned.
double bench_sgemm_again(const BenchRun& run, double peak, json& report);

// train.cpp: the training step at one attention kind ("train", "train_hard", words/s and the
// ratios to Python per batch).
void bench_training(const BenchRun& run, AttentionKind kind, json& report);
// train.cpp: each satcap training measurement's FLOP rate as a fraction of `peak`.
void add_fractions_of_peak(json& report, double peak);

// beam.cpp
void bench_beam(const BenchRun& run, json& report);
// prepare.cpp
void bench_prepare(const BenchRun& run, json& report);
// growth.cpp
void bench_growth(const BenchRun& run, json& report);
// ops.cpp: the operations per decoder time step ("ops", "ops_per_step[_hard]", "ops_per_step_cuda[_hard]",
// "ops_cut[_hard]": the CUDA count over the count before, kOpsPerStepBefore)
void bench_ops(const BenchRun& run, json& report);
// dist.cpp: 1 process vs 2 (--nproc 2) words/s and the scaling efficiency
void bench_dist(const BenchRun& run, json& report);

// ---------------------------------------------------------------------------------------------
// report.cpp

// j[key] when it is a number, else `fallback`.
double number_or(const json& j, const std::string& key, double fallback = 0);
// j[key] when j has it, else null.
json field_or_null(const json& j, const std::string& key);
// a / b, or null when either is not a positive finite number.
json ratio(double a, double b);
// The targets ("targets": printed, never enforced) of what the report holds.
void add_targets(json& report);

}  // namespace satcap::bench
