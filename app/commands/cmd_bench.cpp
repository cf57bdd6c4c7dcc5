// `satcap bench`: satcap against the machine's limit and the Python way, in one run
// (app/bench/bench.h says what is measured).
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

#include "bench/bench.h"
#include "command.h"
#include "options_cli.h"
#include "satcap/runtime/atomic_file.h"
#include "satcap/runtime/error.h"

namespace satcap::app {
namespace {

struct BenchCommandOptions {
  BenchOptions bench;
  bool json = false;  // one JSON object on stdout instead of the table
  std::string save;    // also write that JSON object to this file
};

const CommandRegistration registration{
    "bench",
    "Measure satcap (training step, beam search, encoder, growth) against sgemm peak and PyTorch in Python",
    [](CLI::App& sub) -> RunFunction {
      auto opts = std::make_shared<BenchCommandOptions>();
      sub.add_flag("--quick", opts->bench.quick, "Smaller measurements, no growth runs (about 1-2 minutes)")
          ->capture_default_str();
      sub.add_flag("--smoke", opts->bench.smoke, "Tiny sizes, seconds: checks the plumbing, numbers mean nothing")
          ->capture_default_str();
      sub.add_flag("--json", opts->json, "Print one JSON object instead of the table")->capture_default_str();
      sub.add_option("--save", opts->save, "Also write the JSON object to this file (with the table on stdout)")
          ->capture_default_str();
      sub.add_option("--only", opts->bench.parts, "Run only these parts: sgemm train python beam prepare growth ops dist")
          ->delimiter(',')
          ->capture_default_str();
      sub.add_option("--batches", opts->bench.batches, "Training batch sizes (\"\" = 32,64; the last one is compared with Python)")
          ->delimiter(',')
          ->capture_default_str();
      add_enum_option(sub, "--attention", opts->bench.attention, "Attention kinds to measure: both, soft or hard");
      add_enum_option(sub, "--precision", opts->bench.precision,
                      "Training steps' precision, satcap's and Python's: fp32, bf16 or fp16 (fp16: CUDA only)");
      sub.add_option("--growth-sizes", opts->bench.growth_sizes, "Dataset sizes of the growth runs (\"\" = 2000,20000)")
          ->delimiter(',')
          ->capture_default_str();
      sub.add_option("--satcap", opts->bench.satcap_binary, "satcap binary for the growth runs (\"\" = this one)")
          ->capture_default_str();
      sub.add_option("--python", opts->bench.python, "Python interpreter with PyTorch (Debian's python3-torch)")
          ->capture_default_str();
      sub.add_option("--scripts", opts->bench.scripts_dir, "Folder of the Python benchmark scripts (\"\" = <source>/tools/bench)")
          ->capture_default_str();
      sub.add_option("--trace", opts->bench.trace,
                     "Write a Chrome trace of the timed training steps (LibTorch's profiler; the last batch size and attention kind)")
          ->capture_default_str();
      sub.add_option("--work-dir", opts->bench.work_dir, "Scratch folder for generated datasets (\"\" = a temporary one)")
          ->capture_default_str();
      return [opts] {
        opts->bench.device = global_options().device;
        std::ostream* log = global_options().quiet ? nullptr : &std::cerr;
        nlohmann::json report = run_bench(opts->bench, log);
        if (!opts->save.empty()) {
          write_file_atomic(opts->save, report.dump(2) + "\n", ParentDirs::must_exist);  // a typo is not a new folder
        }
        if (opts->json) {
          std::cout << report.dump() << "\n";
        } else {
          std::cout << format_bench_report(report);
        }
        return 0;
      };
    }};

}  // namespace
}  // namespace satcap::app
