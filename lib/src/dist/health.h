// Which rank failed, told through the run's store (keys under dist::kHealthPrefix):
//   hb/<r>         a counter each rank's watch thread adds 1 to every heartbeat, over its own
//                  store connection: it goes on while the main thread computes or waits in a
//                  collective, and stops when the process dies, is stopped or is cut off
//   abort/<r>      rank r is alive but giving up (its collective failed, or its own error)
//   left/<r>       rank r finished normally: its heartbeat stops without it being dead
//   diagnosed/<r>  rank r has read the verdict (a store-hosting rank 0 waits for these)
//   failure        the verdict, first writer wins (compareSet): the launcher when it reaps a
//                  failed worker, a rank that fails on its own, a watch thread that saw its
//                  neighbour's heartbeat stall, or the first rank whose diagnosis named someone
// Every rank's watch thread also reads `failure` every heartbeat, and watches the next rank's
// heartbeat (each rank is watched by one other, so the store's load grows with the ranks, not
// their square); either way it stops the process naming the failed rank, even while the main
// thread is busy outside any collective (decoding, writing a checkpoint, preparing features).
// TCPStore's set/add/check do not honour the store's timeout (measured: they block for good when
// the store's host is cut off), so every call from a failing process runs on a detached thread
// with a deadline.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "dist/process_group.h"

namespace satcap::dist {

class HealthMonitor : public std::enable_shared_from_this<HealthMonitor> {
 public:
  // `on_failure(verdict)` is called from the watch thread when another rank failed; it does not return.
  HealthMonitor(const DistEnvironment& env, Millis heartbeat, Millis stall_limit,
                std::function<void(const std::string&)> on_failure);
  ~HealthMonitor();

  // Opens the monitor's own store connections and starts the watch thread (after the rendezvous).
  void start();
  // After a collective failed: marks this rank as giving up and returns the verdict: the `failure`
  // key when someone wrote it, else the ranks whose heartbeat stalled for 3 heartbeats and posted
  // no abort notice. Takes at most 3 heartbeats + 2 s (twice that on a rank 0 hosting the store: it
  // stays until the others have read the verdict, or its exit would take the store away from them).
  std::string diagnose(const std::string& my_error);
  // This rank failed on its own: the verdict "rank r failed: why" for the others (bounded likewise).
  void report_self_failure(const std::string& why);
  // This rank leaves normally: stops the watch thread, marks left/<r>.
  void leave();

  Millis heartbeat() const { return heartbeat_; }

 private:
  void watch();
  c10::intrusive_ptr<c10d::Store> connect_client() const;

  DistEnvironment env_;
  Millis heartbeat_, stall_limit_;
  std::function<void(const std::string&)> on_failure_;
  c10::intrusive_ptr<c10d::Store> watch_store_, diag_store_;
  std::atomic<bool> stopped_{false};
};

}  // namespace satcap::dist
