#include "satcap/dist/launcher.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <thread>

#include "dist/process_group.h"

extern char** environ;

namespace satcap {

namespace {

using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_signal = 0;
volatile sig_atomic_t g_signals = 0;
extern "C" void on_launcher_signal(int sig) {
  g_signal = sig;
  g_signals = g_signals + 1;
}

std::string self_executable() {
  char path[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) throw DistributedError("--nproc: cannot find this executable (/proc/self/exe)");
  return std::string(path, static_cast<std::size_t>(n));
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> p;
  for (auto& s : strings) p.push_back(s.data());
  p.push_back(nullptr);
  return p;
}

bool is_rendezvous_variable(const std::string& entry) {
  const std::string name = entry.substr(0, entry.find('='));
  for (const char* v : {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                        "GROUP_RANK", "TORCHELASTIC_USE_AGENT_STORE"})
    if (name == v) return true;
  return false;
}

struct Worker {
  pid_t pid = -1;
  bool running = false;
};

}  // namespace

int run_local_workers(const LaunchOptions& o, const std::vector<std::string>& arguments) {
  if (o.nproc < 1) throw UsageError("--nproc must be at least 1 (got " + std::to_string(o.nproc) + ")");
  auto say = [&](const std::string& line) {
    if (!o.quiet) std::cerr << "satcap: " << line << std::endl;
  };
  // The store, in this process: the kernel picks the port (no race for a free one), and it
  // outlives every worker, so the others can still read who failed when one dies.
  c10d::TCPStoreOptions so;
  so.port = 0;
  so.isServer = true;
  so.waitWorkers = false;
  so.timeout = std::chrono::seconds(30);
  c10::intrusive_ptr<c10d::TCPStore> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
  } catch (const std::exception& e) {
    throw DistributedError("--nproc: cannot start the rendezvous store on " + o.master_addr + ": " +
                           dist::error_text(e));
  }
  const int port = store->getPort();
  c10d::PrefixStore health(dist::kHealthPrefix, store);

  // Everything the workers need is built before fork(): the store's server thread is running, so a
  // child may only call async-signal-safe functions before execve.
  const std::string exe = self_executable();
  std::vector<std::string> base;
  for (char** e = environ; *e != nullptr; ++e)
    if (!is_rendezvous_variable(*e)) base.emplace_back(*e);
  std::vector<std::vector<std::string>> environments(static_cast<std::size_t>(o.nproc), base);
  for (int r = 0; r < o.nproc; ++r) {
    auto& env = environments[static_cast<std::size_t>(r)];
    env.push_back("MASTER_ADDR=" + o.master_addr);
    env.push_back("MASTER_PORT=" + std::to_string(port));
    env.push_back("WORLD_SIZE=" + std::to_string(o.nproc));
    env.push_back("RANK=" + std::to_string(r));
    env.push_back("LOCAL_RANK=" + std::to_string(r));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(o.nproc));
    env.push_back("GROUP_RANK=0");
    env.push_back("TORCHELASTIC_USE_AGENT_STORE=True");
  }
  std::vector<std::string> argv_strings{exe};
  argv_strings.insert(argv_strings.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv = pointers(argv_strings);

  struct sigaction action {};
  action.sa_handler = on_launcher_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);
  g_signal = 0;
  g_signals = 0;

  const pid_t parent = ::getpid();
  std::vector<Worker> workers(static_cast<std::size_t>(o.nproc));
  std::string started;
  for (int r = 0; r < o.nproc; ++r) {
    std::vector<char*> envp = pointers(environments[static_cast<std::size_t>(r)]);
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (auto& w : workers)
        if (w.running) ::kill(w.pid, SIGKILL);
      throw DistributedError(std::string("--nproc: fork failed: ") + std::strerror(errno));
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);       // the launcher killed: its workers go too
      if (::getppid() != parent) ::_exit(127);  // it died before prctl took effect
      ::execve(exe.c_str(), argv.data(), envp.data());
      ::_exit(127);
    }
    workers[static_cast<std::size_t>(r)] = {pid, true};
    started += (r == 0 ? "" : ", ") + std::string("rank ") + std::to_string(r) + " pid " + std::to_string(pid);
  }
  say("started " + std::to_string(o.nproc) + " workers (" + started + "), rendezvous at " + o.master_addr + ":" +
      std::to_string(port));

  int result = 0, running = o.nproc, first_failed = -1;
  Clock::time_point failed_at{}, kill_at = Clock::time_point::max();
  int signals_seen = 0;
  auto since_failure = [&] {
    if (first_failed < 0) return std::string();
    char text[64];
    std::snprintf(text, sizeof text, ", %.2f s after rank %d failed",
                  std::chrono::duration<double>(Clock::now() - failed_at).count(), first_failed);
    return std::string(text);
  };
  while (running > 0) {
    bool reaped = false;
    for (int r = 0; r < o.nproc; ++r) {
      Worker& w = workers[static_cast<std::size_t>(r)];
      if (!w.running) continue;
      int status = 0;
      if (::waitpid(w.pid, &status, WNOHANG) != w.pid) continue;
      w.running = false;
      --running;
      reaped = true;
      const std::string what = dist::describe_exit(r, status) + " (pid " + std::to_string(w.pid) + ")";
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      // A worker that stopped on a signal or a non-finite loss checkpointed and stopped together
      // with the others (they agree on it at every step): not a failure.
      if (code == 0 || code == static_cast<int>(ExitCode::interrupted)) {
        if (code != 0 && (result == 0 || result > 128)) result = code;
        if (code != 0 || first_failed >= 0) say(what + since_failure());
        continue;
      }
      if (first_failed >= 0) {
        say(what + since_failure());
        continue;
      }
      first_failed = r;
      failed_at = Clock::now();
      result = code >= 0 ? code : static_cast<int>(ExitCode::peer_failed);
      say(what + (running > 0 ? "; the others stop" : ""));
      try {  // the others read it (their watch thread, or the diagnosis of a failed collective)
        health.compareSet(dist::kFailureKey, {}, dist::to_bytes(dist::describe_exit(r, status) + " (seen by the launcher)"));
      } catch (const std::exception& e) {
        say(std::string("cannot write the failure into the store: ") + dist::error_text(e));
      }
      kill_at = std::min(kill_at, Clock::now() + o.grace);
    }
    if (reaped) continue;  // reap whatever else is ready before sleeping
    if (g_signals != signals_seen) {
      signals_seen = g_signals;
      const int sig = g_signal;
      if (signals_seen == 1) {
        say(std::string("got ") + strsignal(sig) +
            ": passing it on to the workers (they checkpoint and stop; a second signal kills them)");
        for (auto& w : workers)
          if (w.running) ::kill(w.pid, sig);
        if (result == 0) result = 128 + sig;
        kill_at = std::min(kill_at, Clock::now() + o.kill_after);
      } else {
        kill_at = Clock::now();
      }
    }
    if (Clock::now() >= kill_at) {
      kill_at = Clock::time_point::max();
      for (int r = 0; r < o.nproc; ++r) {
        Worker& w = workers[static_cast<std::size_t>(r)];
        if (!w.running) continue;
        say("rank " + std::to_string(r) + " (pid " + std::to_string(w.pid) + ") did not stop: SIGKILL");
        ::kill(w.pid, SIGKILL);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace satcap
