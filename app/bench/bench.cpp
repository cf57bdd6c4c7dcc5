// run_bench (bench.h): the benchmark's parts in order, each adding to one report (measure.h lists
// where each part lives).
#include <unistd.h>

#include <ATen/Parallel.h>

#include "bench/measure.h"
#include "satcap/runtime/cpu_allocator.h"
#include "satcap/runtime/runtime.h"

namespace fs = std::filesystem;

namespace satcap {

namespace {

// The scratch folder: the options' work_dir, or a fresh one under the system's temporary
// directory, removed at the end.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& work_dir) : path_(work_dir), own_(work_dir.empty()) {
    if (own_) path_ = fs::temp_directory_path() / ("satcap-bench-" + std::to_string(getpid()));
    fs::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    if (own_) fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  bool own_;
};

}  // namespace

nlohmann::json run_bench(const BenchOptions& options, std::ostream* log_stream) {
  using namespace bench;
  options.validate();
  const c10::Device device = parse_device(options.device);
  check_precision(options.precision, device);
  const auto bench_start = Clock::now();
  const ScratchDir work(options.work_dir);
  BenchRun run{options, make_plan(options), device, options.precision, at::get_num_threads(), work.path(),
               Logger{log_stream}, Python{}};
  const Plan& plan = run.plan;

  json report = {{"format", "satcap-bench"},
                 {"format_version", 1},
                 {"mode", plan.mode},
                 {"machine", machine_facts(run)},
                 {"precision", precision_name(run.precision)},
                 {"targets", json::array()},
                 {"train_batches", plan.train_batches}};
  run.log("mode ", plan.mode, ", ", run.threads, " thread(s), device ", device.str(), ", precision ",
          precision_name(run.precision), ", BLAS ", report["machine"]["blas"].get<std::string>());

  // 1. The sgemm peak.
  double peak = plan.sgemm ? bench_sgemm(run, report) : 0;

  // 2. The training step against the Python scripts, with the CPU allocator `satcap train` uses
  // (satcap/runtime/cpu_allocator.h); the beam search and the encoder below run with LibTorch's, as
  // `caption` and `prepare` do. Then the peak again, and the training FLOP rates as fractions of
  // the better one.
  install_cpu_allocator();
  if (plan.python || plan.beam) run.python = find_python(options, report, run.log);
  for (AttentionKind kind : {AttentionKind::soft, AttentionKind::hard}) {
    if (runs_attention(options.attention, kind)) bench_training(run, kind, report);
  }
  if (peak > 0 && plan.train && plan.mode != "smoke") peak = bench_sgemm_again(run, peak, report);
  if (peak > 0) add_fractions_of_peak(report, peak);
  uninstall_cpu_allocator();

  // 3. Beam search against the per-image Python one.
  if (plan.beam) bench_beam(run, report);
  // 4. prepare against the bare encoder forward.
  if (plan.prepare) bench_prepare(run, report);
  // 5. Growth (full mode, or when named in --only).
  if (plan.growth) bench_growth(run, report);
  // 6. The operations per decoder time step of the device-generic training step.
  if (plan.ops) bench_ops(run, report);
  // 7. Data-parallel scaling (only when named in --only).
  if (plan.dist) bench_dist(run, report);

  report["seconds"] = seconds_since(bench_start);
  add_targets(report);
  return report;
}

}  // namespace satcap
