// Data-parallel scaling (measure.h): the same training run as child satcap processes, with 1 process
// and 1 thread, 1 process and 2 threads, and 2 processes of 1 thread each (--nproc 2, Gloo over
// loopback): training words/s of each (the global batch's words, from rank 0's log) and the scaling
// efficiency, words/s of 2 processes over twice that of 1 process with 1 thread. Only when named
// (--only dist): it prepares a scenes dataset and trains three times (about a minute on 2 cores).
// The model has the scenes widths (as growth), not the paper's 512: at 512 a step takes seconds
// here, and what is measured is how the step scales, which the decoder's width changes little.
#include <fstream>
#include <optional>

#include "bench/measure.h"

namespace fs = std::filesystem;

namespace satcap::bench {

namespace {

std::string self_executable() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

// Mean words/s of a run's "train" records after the first `skip` (warm-up), or 0.
double mean_words_per_second(const fs::path& log_path, std::size_t skip) {
  std::ifstream in(log_path);
  std::string line;
  std::vector<double> rates;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.value("kind", "") == "train" && j.contains("words_per_s")) rates.push_back(j["words_per_s"].get<double>());
  }
  if (rates.size() <= skip) return 0;
  double sum = 0;
  for (std::size_t i = skip; i < rates.size(); ++i) sum += rates[i];
  return sum / static_cast<double>(rates.size() - skip);
}

json measure_dist(const BenchRun& bench_run) {
  const BenchOptions& o = bench_run.options;
  const std::string bin = o.satcap_binary.empty() ? self_executable() : o.satcap_binary;
  if (bin.empty() || !fs::exists(bin)) return {{"error", "the satcap binary was not found: " + bin}};
  const bool small = o.smoke;
  const int64_t images = small ? 40 : 200, steps = small ? 4 : 16, batch = small ? 8 : 32;
  const fs::path dir = bench_run.work / "dist";
  fs::remove_all(dir);
  json result{{"images", images}, {"steps", steps}, {"batch", batch}, {"binary", bin}};
  auto run = [&](std::vector<std::string> args, const std::string& what) -> std::optional<ChildRun> {
    std::vector<std::string> argv = {bin, "--quiet", "--device", "cpu"};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildRun r = run_child(argv);
    if (r.exit_code != 0) {
      result["error"] = exit_message(what, r);
      bench_run.log("  ", result["error"].get<std::string>());
      return std::nullopt;
    }
    return r;
  };
  bench_run.log("dist: ", images, " scenes and their features ...");
  if (!run({"scenes", "--out", (dir / "data").string(), "--images", std::to_string(images)}, "satcap scenes") ||
      !run({"prepare", "--data", (dir / "data").string(), "--out", (dir / "features").string()}, "satcap prepare"))
    return result;
  struct Setup {
    const char* name;
    int processes, threads;
  };
  json runs = json::object();
  for (const Setup& s : {Setup{"1_process_1_thread", 1, 1}, Setup{"1_process_2_threads", 1, 2},
                         Setup{"2_processes_1_thread", 2, 1}}) {
    bench_run.log("dist: ", s.processes, " process(es) of ", s.threads, " thread(s), ", steps, " steps of ", batch,
                  " captions ...");
    const fs::path out = dir / s.name;
    std::vector<std::string> args = {"--threads", std::to_string(s.threads), "train", "--data", (dir / "data").string(),
                                     "--features", (dir / "features").string(), "--out", out.string(), "--epochs", "100",
                                     "--max-steps", std::to_string(steps), "--batch", std::to_string(batch),
                                     "--embed-dim", "128", "--attention-dim", "128", "--hidden-dim", "256",
                                     "--log-every", "1", "--checkpoint-every", "0", "--val-every", "1000",
                                     "--no-eval-test"};
    if (s.processes > 1) args.insert(args.end(), {"--nproc", std::to_string(s.processes)});
    auto r = run(args, std::string("satcap train (") + s.name + ")");
    if (!r) return result;
    const double wps = mean_words_per_second(out / "train_log.jsonl", 2);
    runs[s.name] = {{"processes", s.processes}, {"threads", s.threads}, {"words_per_s", wps}, {"seconds", r->seconds}};
    bench_run.log("dist:   ", static_cast<int64_t>(wps), " words/s");
  }
  result["runs"] = runs;
  const double one = number_or(runs["1_process_1_thread"], "words_per_s");
  const double two = number_or(runs["2_processes_1_thread"], "words_per_s");
  const double threads = number_or(runs["1_process_2_threads"], "words_per_s");
  result["speedup_2_processes"] = ratio(two, one);
  result["scaling_efficiency"] = one > 0 ? json(two / (2 * one)) : json(nullptr);
  result["processes_over_threads"] = ratio(two, threads);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return result;
}

}  // namespace

void bench_dist(const BenchRun& run, json& report) {
  json d = measure_dist(run);
  report["dist"] = d;
  report["dist_scaling_efficiency"] = field_or_null(d, "scaling_efficiency");
}

}  // namespace satcap::bench
