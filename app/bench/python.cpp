// The Python side of the benchmark (measure.h): Debian's python3 with python3-torch, found and
// checked, and the scripts of tools/bench run as child processes, each printing one JSON line.
#include "bench/measure.h"
#include "satcap/build_config.h"

namespace fs = std::filesystem;

namespace satcap::bench {

namespace {

Python check_python(const BenchOptions& o) {
  Python py;
  py.interpreter = o.python;
  py.scripts_dir = o.scripts_dir.empty() ? (fs::path(SATCAP_SOURCE_DIR) / "tools" / "bench").string() : o.scripts_dir;
  if (!fs::exists(py.interpreter)) {
    py.error = py.interpreter + " not found (install python3 and python3-torch: apt-get install python3-torch)";
    return py;
  }
  if (!fs::exists(fs::path(py.scripts_dir) / "train_common.py")) {
    py.error = py.scripts_dir + "/train_common.py not found (the source tree's tools/bench)";
    return py;
  }
  // find_spec only locates the package (fast); the scripts report torch.__version__ themselves.
  ChildRun r = run_child({py.interpreter, "-c",
                          "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('torch') else 1)"});
  if (r.exit_code != 0) {
    py.error = py.interpreter + " has no torch module (install Debian's python3-torch)";
  }
  return py;
}

}  // namespace

Python find_python(const BenchOptions& options, json& report, const Logger& log) {
  Python py = check_python(options);
  report["machine"]["python"] = py.interpreter;
  report["machine"]["python_torch"] = nullptr;  // filled from the first script's output
  if (!py.ok()) {
    report["python_error"] = py.error;
    log("Python comparisons skipped: ", py.error);
  }
  return py;
}

json run_script(const BenchRun& run, const std::string& script, const std::vector<std::string>& args,
                const DecoderOptions& s) {
  const Python& py = run.python;
  std::vector<std::string> argv = {py.interpreter, (fs::path(py.scripts_dir) / script).string(),
                                   "--threads", std::to_string(run.threads), "--device", run.options.device,
                                   "--regions", std::to_string(s.regions), "--encoder-dim", std::to_string(s.feature_dim),
                                   "--attention-dim", std::to_string(s.attention_dim), "--embed-dim",
                                   std::to_string(s.embed_dim), "--decoder-dim", std::to_string(s.hidden_dim),
                                   "--vocab", std::to_string(s.vocab_size)};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildRun r = run_child(argv, py.scripts_dir);
  if (r.exit_code != 0) return {{"error", exit_message(script, r)}};
  std::string line = last_lines(r.out, 2);
  try {
    json j = json::parse(line);
    j["max_rss_mib"] = static_cast<double>(r.max_rss_kib) / 1024.0;
    return j;
  } catch (const std::exception&) {
    return {{"error", script + " printed no JSON line: " + line}};
  }
}

bool script_succeeded(const json& result, json& report, const Logger& log) {
  if (result.contains("error")) {
    log("  ", result["error"].get<std::string>());
    return false;
  }
  report["machine"]["python_torch"] = result.value("torch", "");
  return true;
}

}  // namespace satcap::bench
