#include "test_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <torch/cuda.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace fs = std::filesystem;

CommandResult run_program(const std::string& program, const std::vector<std::string>& args) {
  static int counter = 0;  // ctest runs tests in parallel processes: keep their files apart
  fs::path dir = fresh_temp_dir("run_program_io_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
  fs::path out_path = dir / "stdout", err_path = dir / "stderr";
  std::vector<std::string> argv_storage{program};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + program);
  int status = 0;
  waitpid(pid, &status, 0);
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = read_text_file(out_path);
  result.err = read_text_file(err_path);
  return result;
}

CommandResult run_satcap(const std::vector<std::string>& args) { return run_satcap_with(args, RunOptions{}); }

std::string shell_output(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return out;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  pclose(pipe);
  return out;
}

CommandResult run_satcap_with(const std::vector<std::string>& args, const RunOptions& options) {
  SatcapProcess p(args, options);
  return p.wait();
}

SatcapProcess::SatcapProcess(const std::vector<std::string>& args, const RunOptions& options)
    : timeout_s_(options.timeout_s) {
  static std::atomic<int> counter{0};  // ctest runs tests in parallel processes: keep their files apart
  dir_ = fresh_temp_dir("run_satcap_io_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
  if (options.unprivileged && geteuid() == 0) fs::permissions(dir_, fs::perms::all);
  const std::string out_path = options.stdout_path.empty() ? (dir_ / "stdout").string() : options.stdout_path;
  const std::string err_path = (dir_ / "stderr").string();
  // Everything the child needs is made before fork(): after it, only async-signal-safe calls.
  std::vector<std::string> argv_storage{SATCAP_BINARY};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  env_storage.insert(env_storage.end(), options.env.begin(), options.env.end());
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  const bool drop = options.unprivileged && geteuid() == 0;
  const rlim_t limit = options.file_size_limit;
  // Under a file-size limit stderr goes through a pipe: the limit would cut a file at its size.
  int err_pipe[2] = {-1, -1};
  if (limit > 0 && pipe(err_pipe) != 0) throw std::runtime_error("pipe failed");
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    int err = limit > 0 ? err_pipe[1] : open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (in < 0 || out < 0 || err < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    if (limit > 0) close(err_pipe[0]);
    if (limit > 0) {
      signal(SIGXFSZ, SIG_IGN);  // inherited through exec: writes past the limit fail with EFBIG
      rlimit r{limit, limit};
      setrlimit(RLIMIT_FSIZE, &r);
    }
    if (drop && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(126);
    execve(SATCAP_BINARY, argv.data(), envp.data());
    _exit(127);
  }
  if (limit > 0) {
    close(err_pipe[1]);
    err_fd_ = err_pipe[0];
    fcntl(err_fd_, F_SETFL, O_NONBLOCK);
  }
}

SatcapProcess::~SatcapProcess() {
  if (err_fd_ >= 0) close(err_fd_);
  if (!done_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

void SatcapProcess::drain_stderr() {
  if (err_fd_ < 0) return;
  char buf[4096];
  ssize_t n;
  while ((n = read(err_fd_, buf, sizeof buf)) > 0) piped_err_.append(buf, static_cast<std::size_t>(n));
}

bool SatcapProcess::running() {
  drain_stderr();
  if (done_) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  done_ = true;
  result_.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return false;
}

void SatcapProcess::kill9() {
  if (running()) ::kill(pid_, SIGKILL);
}

CommandResult SatcapProcess::wait() {
  const auto start = std::chrono::steady_clock::now();
  while (running()) {
    if (timeout_s_ > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s_) {
      ::kill(pid_, SIGKILL);
      result_.timed_out = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  result_.out = read_text_file(dir_ / "stdout");
  if (err_fd_ >= 0) {
    drain_stderr();
    close(err_fd_);
    err_fd_ = -1;
    result_.err = piped_err_;
  } else {
    result_.err = read_text_file(dir_ / "stderr");
  }
  return result_;
}

int dead_pid() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status = 0;
  waitpid(pid, &status, 0);
  return pid;
}

fs::path fresh_temp_dir(const std::string& name) {
  fs::path dir = fs::path(SATCAP_TEST_TMP) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

bool torch_cuda_available() { return torch::cuda::is_available(); }

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}
