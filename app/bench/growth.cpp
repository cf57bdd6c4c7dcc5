// Growth with the data (measure.h): a scenes dataset at each size (2,000 and 20,000 images) through
// `satcap prepare` and one epoch of `satcap train`, run as child processes of the satcap binary:
// time per image and peak memory, and how they grow from the smallest size to the largest.
#include <optional>
#include <utility>

#include "bench/measure.h"

namespace fs = std::filesystem;

namespace satcap::bench {

namespace {

// Each growth ratio (the report's key, "growth_" before it at the top level) and the figure per run
// it compares, largest dataset over smallest.
const std::pair<const char*, const char*> kGrowthRatios[] = {
    {"prepare_time_per_image_growth", "prepare_ms_per_image"},
    {"train_time_per_image_growth", "train_ms_per_image"},
    {"prepare_peak_rss_growth", "prepare_peak_rss_mib"},
    {"train_peak_rss_growth", "train_peak_rss_mib"},
};

std::string self_executable() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

// A step's peak resident set and its largest heap and file-backed parts, in MiB.
void put_memory(json& run, const std::string& step, const ChildRun& r) {
  run[step + "_peak_rss_mib"] = static_cast<double>(r.max_rss_kib) / 1024.0;
  run[step + "_max_rss_anon_mib"] = static_cast<double>(r.max_rss_anon_kib) / 1024.0;
  run[step + "_max_rss_file_mib"] = static_cast<double>(r.max_rss_file_kib) / 1024.0;
}

json measure_growth(const BenchRun& bench_run) {
  const BenchOptions& o = bench_run.options;
  const std::string bin = o.satcap_binary.empty() ? self_executable() : o.satcap_binary;
  if (bin.empty() || !fs::exists(bin)) return {{"error", "the satcap binary was not found: " + bin}};
  json runs = json::array();
  const std::vector<std::string> common = {"--threads", std::to_string(bench_run.threads), "--device", o.device, "--quiet"};
  // One satcap command; on failure its error goes into `run` and the log.
  auto run_step = [&](std::vector<std::string> args, json& run, const std::string& what) -> std::optional<ChildRun> {
    std::vector<std::string> argv = {bin};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), common.begin(), common.end());
    ChildRun r = run_child(argv);
    if (r.exit_code != 0) {
      run["error"] = exit_message(what, r);
      bench_run.log("  ", run["error"].get<std::string>());
      return std::nullopt;
    }
    return r;
  };
  for (int64_t n : bench_run.plan.growth_sizes) {
    json run{{"images", n}};
    const fs::path dir = bench_run.work / ("growth-" + std::to_string(n));
    fs::remove_all(dir);
    bench_run.log("growth: ", n, " scenes: generating ...");
    auto gen = run_step({"scenes", "--out", (dir / "data").string(), "--images", std::to_string(n)}, run, "satcap scenes");
    if (gen) {
      run["scenes_seconds"] = gen->seconds;
      bench_run.log("growth: ", n, " scenes: prepare ...");
      auto prep = run_step({"prepare", "--data", (dir / "data").string(), "--out", (dir / "features").string()}, run,
                           "satcap prepare");
      if (prep) {
        run["prepare_seconds"] = prep->seconds;
        run["prepare_ms_per_image"] = prep->seconds * 1000 / static_cast<double>(n);
        put_memory(run, "prepare", *prep);
        bench_run.log("growth: ", n, " scenes: one training epoch ...");
        // One epoch; validation on a fixed 50 images so that it costs the same at both sizes. The
        // decoder has the scenes model's widths (tools/scenes_training.json), not the paper's 512:
        // growth measures how time and memory scale with the data, and the 20,000-image epoch
        // (80,000 captions) at 512 would take most of an hour on two cores.
        auto train = run_step({"train", "--data", (dir / "data").string(), "--features", (dir / "features").string(),
                               "--out", (dir / "run").string(), "--epochs", "1", "--val-max-images", "50",
                               "--embed-dim", "128", "--attention-dim", "128", "--hidden-dim", "256",
                               "--checkpoint-every", "0", "--no-eval-test"},
                              run, "satcap train");
        if (train) {
          const double train_images = static_cast<double>(n) * 0.8;  // the scenes' train split: 80%
          run["train_seconds"] = train->seconds;
          run["train_ms_per_image"] = train->seconds * 1000 / train_images;
          put_memory(run, "train", *train);
        }
      }
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
    runs.push_back(run);
  }
  json g{{"runs", runs}, {"binary", bin}};
  if (runs.size() >= 2) {
    for (const auto& [key, figure] : kGrowthRatios)
      g[key] = ratio(number_or(runs.back(), figure), number_or(runs.front(), figure));
  }
  return g;
}

}  // namespace

void bench_growth(const BenchRun& run, json& report) {
  json g = measure_growth(run);
  report["growth"] = g;
  for (const auto& r : kGrowthRatios) report[std::string("growth_") + r.first] = field_or_null(g, r.first);
}

}  // namespace satcap::bench
