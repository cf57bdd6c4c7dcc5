// What the dist layer's sources share: c10d's headers, the process group's base type in each
// LibTorch, the store's key names, and the Communicator's inside (satcap/dist/communicator.h).
//
// LibTorch 1.13's ProcessGroupGloo derives from c10d::ProcessGroup; from 2.0 on it derives from
// c10d::Backend, and ProcessGroup wraps backends. Both bases declare the collectives satcap calls
// (broadcast, allreduce, allgather, barrier) with the same signatures, so the group is held as a
// pointer to that base and called directly, in either version.
#pragma once

#include "satcap/build_config.h"

#if SATCAP_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#endif

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "satcap/dist/communicator.h"

namespace satcap {

namespace dist {

#if TORCH_VERSION_MAJOR >= 2
using GroupBase = c10d::Backend;
#else
using GroupBase = c10d::ProcessGroup;
#endif

using Millis = std::chrono::milliseconds;

// Keys in the run's store. The launcher writes kFailureKey under kHealthPrefix.
inline constexpr const char* kHealthPrefix = "satcap/health/";
inline constexpr const char* kFailureKey = "failure";

std::vector<std::uint8_t> to_bytes(const std::string& s);
std::string from_bytes(const std::vector<std::uint8_t>& v);
// e.what() without the C++ backtrace c10::Error appends, first line only.
std::string error_text(const std::exception& e);
// "rank 1 was killed by signal 9 (Killed)", "rank 1 exited with code 3"
std::string describe_exit(int rank, int wait_status);

class HealthMonitor;

}  // namespace dist

struct Communicator::Impl {
  DistEnvironment env;
  DistOptions options;
  c10::Device device{c10::kCPU};      // where collectives run: CPU (Gloo) or the rank's GPU (NCCL)
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<dist::GroupBase> group;
  std::string backend;
  std::string local_address;           // the address the Gloo device talks from
  double rendezvous_seconds = 0;
  std::shared_ptr<dist::HealthMonitor> health;
  std::mutex mutex;                    // failure_note
  std::string failure_note;
  bool left = false;

  // `tensor` on the collectives' device (the same tensor when it already is).
  at::Tensor on_group_device(const at::Tensor& tensor) const;
  // One collective: `launch()` starts it, then it is waited for. When either throws (a peer died,
  // timed out, ...) the process reports which rank failed and exits: this does not return then.
  template <typename F>
  void run(const char* what, F&& launch) {
    c10::intrusive_ptr<c10d::Work> work;
    try {
      work = launch();
    } catch (const std::exception& e) {
      failed(what, e);
    }
    wait(work, what);
  }
  // Waits for a collective started earlier; on failure reports and exits, as run().
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what);
  // A collective failed: finds out which rank failed, prints it, _exit(peer_failed).
  [[noreturn]] void failed(const char* what, const std::exception& error);
  [[noreturn]] void stop(const std::string& verdict);
};

}  // namespace satcap
