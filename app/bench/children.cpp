// Child processes of the benchmark (measure.h): the Python scripts and the growth runs of the
// satcap binary, with their output, time and peak memory read from /proc while they run.
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "bench/measure.h"

namespace satcap::bench {

ChildRun run_child(const std::vector<std::string>& argv, const std::string& cwd) {
  ChildRun r;
  int out_pipe[2], err_pipe[2];
  int exec_pipe[2];  // closed by a successful exec (O_CLOEXEC): the parent waits for that
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0 || pipe2(exec_pipe, O_CLOEXEC) != 0)
    throw std::runtime_error("bench: pipe() failed");
  auto start = Clock::now();
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("bench: fork() failed");
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    close(out_pipe[0]);
    close(out_pipe[1]);
    close(err_pipe[0]);
    close(err_pipe[1]);
    close(exec_pipe[0]);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  close(exec_pipe[1]);
  {  // until the child has exec'd (or failed to): before that it is a copy of this process
    char c;
    while (read(exec_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    close(exec_pipe[0]);
  }
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[65536];
  // The child's peak memory: VmHWM of its own address space, sampled every 100 ms (monotonic, so
  // only the last moments before it exits can be missed). wait4's ru_maxrss cannot be used: Linux
  // starts a forked child's peak at the parent's resident size at fork time, and this process holds
  // the COCO-scale training tensors by then (every child read 1398 MiB in one full run).
  long hwm_kib = 0;
  const std::string status_path = "/proc/" + std::to_string(pid) + "/status";
  auto sample = [&] {
    std::ifstream st(status_path);
    std::string line;
    auto keep_max = [&](const char* key, long& into) {
      const size_t n = std::strlen(key);
      if (line.compare(0, n, key) == 0) into = std::max(into, std::strtol(line.c_str() + n, nullptr, 10));
    };
    while (std::getline(st, line)) {
      keep_max("VmHWM:", hwm_kib);
      keep_max("RssAnon:", r.max_rss_anon_kib);
      keep_max("RssFile:", r.max_rss_file_kib);
    }
  };
  while (open_fds > 0) {
    sample();
    const int ready = poll(fds, 2, 100);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (ready == 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  rusage usage{};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  r.seconds = seconds_since(start);
  r.max_rss_kib = hwm_kib > 0 ? hwm_kib : usage.ru_maxrss;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string last_lines(const std::string& text, std::size_t n) {
  size_t pos = text.size();
  while (n > 0 && pos > 0) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
    --n;
  }
  return text.substr(pos + 1);
}

std::string exit_message(const std::string& what, const ChildRun& run) {
  return what + " exited with " + std::to_string(run.exit_code) + ": " + last_lines(run.err, 3);
}

}  // namespace satcap::bench
