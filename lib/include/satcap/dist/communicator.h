// Several processes training one model, on LibTorch's own distributed engine (c10d): a TCPStore for
// the rendezvous and a process group, Gloo on the CPU and NCCL on CUDA when LibTorch has it.
// This header names no c10d type (lib/src/dist keeps them), so the training code that uses it
// compiles against any LibTorch.
//
// Failure. No collective returns an error: when one fails (a peer died, the network broke, a peer
// stayed silent past --dist-timeout), or a peer's heartbeat stops, this process finds out which rank
// failed (the launcher's report, the peers' heartbeats and abort notices in the store), prints it
// with the note the training loop left (where the last checkpoint is), and leaves at once with
// ExitCode::peer_failed, without running destructors: a broken process group may block in its
// destructor, and a hang is worse than an abrupt exit. Files written atomically stay intact.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "satcap/dist/dist_options.h"
#include "satcap/runtime/error.h"

namespace satcap {

// Where this process stands in the run, as torchrun and cluster schedulers describe it.
struct DistEnvironment {
  std::string master_addr = "127.0.0.1";  // MASTER_ADDR: the host of the rendezvous store
  int master_port = 29500;                // MASTER_PORT
  int world_size = 1;                     // WORLD_SIZE: processes in the run
  int rank = 0;                           // RANK: this process, 0 .. world_size - 1
  int local_rank = 0;                     // LOCAL_RANK: this process among those of its machine (its GPU)
  int local_world_size = 1;               // LOCAL_WORLD_SIZE: processes on this machine (default 1)
  // TORCHELASTIC_USE_AGENT_STORE=True (torchrun >= 2.0, satcap's --nproc launcher): the launcher
  // hosts the store and every rank connects to it; otherwise rank 0 hosts it.
  bool agent_store = false;
};

// Reads the environment. Throws UsageError naming a missing or malformed variable.
DistEnvironment read_dist_environment();

// The rendezvous failed, or this process stopped because another one did (ExitCode::peer_failed).
class DistributedError : public Error {
 public:
  explicit DistributedError(const std::string& m) : Error(ExitCode::peer_failed, m) {}
};

class Communicator {
 public:
  // The rendezvous: connects to the store, builds the process group (Gloo; NCCL for a CUDA device
  // when LibTorch has it) and starts the heartbeat. Throws DistributedError when the other ranks do
  // not all join within options.timeout, naming those that did not.
  static std::unique_ptr<Communicator> connect(const DistEnvironment& env, const DistOptions& options,
                                               c10::Device device);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const;
  int size() const;
  bool is_main() const { return rank() == 0; }
  const DistEnvironment& environment() const;
  const DistOptions& options() const;
  std::string backend() const;  // "gloo" or "nccl"
  // How the rendezvous went: the backend, the address this process talks from, the time it took.
  std::string describe() const;

  // Collectives: every rank calls the same ones in the same order.
  // Rank 0's values into `tensors` on every rank, in place (one flat buffer per dtype).
  void broadcast(std::vector<at::Tensor>& tensors);
  // The sum over ranks, in place.
  void sum(at::Tensor& tensor);
  // Rank 0's bytes, on every rank (the others' argument is ignored).
  std::string broadcast_bytes(const std::string& bytes);
  // Every rank's bytes, in rank order, on every rank.
  std::vector<std::string> all_gather_bytes(const std::string& bytes);
  void barrier();

  // Rank 0 runs `work` (preparing a feature store, ...) while the others wait for it, for as long
  // as it takes: a wait with no time limit that still ends when rank 0 fails or dies.
  void run_on_main(const std::string& what, const std::function<void()>& work);

  // Said after the failing rank when the run stops because of another process (where the last
  // checkpoint is and how to resume).
  void set_failure_note(const std::string& note);
  // This process failed on its own: tells the others (they stop, naming this rank and `message`),
  // prints "error: message" and exits with `exit_code`.
  [[noreturn]] void abort(const std::string& message, int exit_code);
  // This process takes part in no more collectives and will exit normally: its heartbeat stops
  // without the others taking it for dead.
  void leave();

  struct Impl;  // lib/src/dist/process_group.h
  Impl& impl() { return *impl_; }

 private:
  explicit Communicator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace satcap
