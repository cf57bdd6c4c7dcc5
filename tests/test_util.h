// Helpers shared by the tests: running the real binary, temporary folders, sample paths.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "satcap/build_config.h"
#include "test_config.h"

struct CommandResult {
  int exit_code = -1;       // 128 + N when killed by signal N
  std::string out;          // stdout
  std::string err;          // stderr
  bool timed_out = false;   // killed by RunOptions::timeout_s (a hang)
};

// Runs build/satcap with the arguments (no shell involved) and captures its output.
CommandResult run_satcap(const std::vector<std::string>& args);
// The same for any program (an absolute path, e.g. /usr/bin/python3).
CommandResult run_program(const std::string& program, const std::vector<std::string>& args);
// Runs `command` through /bin/sh and returns its standard output ("" when it cannot start).
std::string shell_output(const std::string& command);

// How run_satcap_with runs the binary.
struct RunOptions {
  double timeout_s = 120;               // SIGKILL after this long: a hang fails the test instead of the suite
  unsigned long long file_size_limit = 0;  // RLIMIT_FSIZE in bytes (0 = none), SIGXFSZ ignored: a full disk (EFBIG)
  std::string stdout_path;              // stdout to this file instead of captured ("/dev/full": a full disk)
  std::vector<std::string> env;         // NAME=VALUE added to the environment
  bool unprivileged = false;            // as root: run as nobody, so that file permissions apply
};
CommandResult run_satcap_with(const std::vector<std::string>& args, const RunOptions& options);

// A satcap process in the background (for killing it at a chosen moment).
class SatcapProcess {
 public:
  SatcapProcess(const std::vector<std::string>& args, const RunOptions& options = {});
  ~SatcapProcess();  // kills a process still running
  bool running();    // not yet exited
  void kill9();
  CommandResult wait();

 private:
  int pid_ = -1;
  std::filesystem::path dir_;
  CommandResult result_;
  bool done_ = false;
  double timeout_s_ = 0;
  int err_fd_ = -1;         // stderr's pipe under a file-size limit
  std::string piped_err_;   // what came through it
  void drain_stderr();
};

// A process id that is certainly not running now (a child that exited and was reaped).
int dead_pid();

// A fresh, empty folder under the build tree's test-tmp/, named after the test.
std::filesystem::path fresh_temp_dir(const std::string& name);

// The repository's root (for samples and models shipped in it).
inline std::filesystem::path source_dir() { return SATCAP_SOURCE_DIR; }

bool torch_cuda_available();

std::string read_text_file(const std::filesystem::path& path);
void write_text_file(const std::filesystem::path& path, const std::string& text);
