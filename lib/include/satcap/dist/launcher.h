// `--nproc N`: N worker processes on this machine, started by satcap itself the way torchrun
// starts them. The launcher hosts the rendezvous store (on a port the kernel picks, so there is no
// race for a free port; the store outlives any worker, so the others can still read who failed),
// starts each worker as a fork/exec of this same executable with MASTER_ADDR, MASTER_PORT,
// WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE and TORCHELASTIC_USE_AGENT_STORE=True set, and
// waits. When a worker fails (exits non-zero or is killed) it writes which one into the store, so
// the others stop within milliseconds naming it, and kills those still running after a grace
// period. SIGINT and SIGTERM are passed on to the workers (they agree on a step, checkpoint and
// stop, exit code 7); a second one kills them. Workers die with the launcher (PR_SET_PDEATHSIG).
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace satcap {

struct LaunchOptions {
  int nproc = 2;
  std::string master_addr = "127.0.0.1";
  // After a worker failed: how long the others get to exit on their own before SIGKILL.
  std::chrono::milliseconds grace{10000};
  // After a signal passed on: how long the workers get to checkpoint and stop before SIGKILL.
  std::chrono::milliseconds kill_after{60000};
  bool quiet = false;  // no lines on stderr about starting and ending workers
};

// Starts the workers, each running this executable with `arguments` (argv[1..]), waits for all of
// them and returns the run's exit code: 0 when every worker exited 0; the exit code of the first
// worker that failed, ExitCode::peer_failed when it was killed by a signal; ExitCode::interrupted
// when the workers stopped on a signal (128 + signal if they ended otherwise). Throws
// DistributedError when the store cannot be started.
int run_local_workers(const LaunchOptions& options, const std::vector<std::string>& arguments);

}  // namespace satcap
