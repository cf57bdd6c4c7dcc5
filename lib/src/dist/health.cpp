#include "dist/health.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <future>
#include <optional>
#include <thread>
#include <vector>

namespace satcap::dist {

namespace {

using SteadyClock = std::chrono::steady_clock;

std::string key(const char* kind, int rank) { return std::string(kind) + "/" + std::to_string(rank); }

std::string seconds_text(Millis m) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1f s", static_cast<double>(m.count()) / 1000.0);
  return s;
}

// `work()` on a detached thread; its result, or nothing when it did not finish within `limit`
// (the thread is left behind: it owns what it uses).
template <typename F>
auto within(Millis limit, F work) -> std::optional<decltype(work())> {
  using R = decltype(work());
  auto result = std::make_shared<std::promise<R>>();
  auto future = result->get_future();
  std::thread([result, work = std::move(work)]() mutable {
    try {
      result->set_value(work());
    } catch (...) {
      result->set_exception(std::current_exception());
    }
  }).detach();
  if (future.wait_for(limit) != std::future_status::ready) return std::nullopt;
  return future.get();
}

std::string store_host(const DistEnvironment& env) {
  return env.agent_store ? "the launcher (the host of the rendezvous store)" : "rank 0 (the host of the rendezvous store)";
}

}  // namespace

HealthMonitor::HealthMonitor(const DistEnvironment& env, Millis heartbeat, Millis stall_limit,
                             std::function<void(const std::string&)> on_failure)
    : env_(env), heartbeat_(heartbeat), stall_limit_(stall_limit), on_failure_(std::move(on_failure)) {}

HealthMonitor::~HealthMonitor() { stopped_ = true; }

c10::intrusive_ptr<c10d::Store> HealthMonitor::connect_client() const {
  // A plain client (no numWorkers: it takes no part in the server's count of workers). The server
  // is known to be up: the rendezvous went through.
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<std::uint16_t>(env_.master_port);
  opts.isServer = false;
  opts.waitWorkers = false;
  opts.timeout = std::max(Millis(2000), 4 * heartbeat_);
  auto tcp = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, opts);
  return c10::make_intrusive<c10d::PrefixStore>(kHealthPrefix, tcp);
}

void HealthMonitor::start() {
  watch_store_ = connect_client();
  diag_store_ = connect_client();
  std::thread([self = shared_from_this()] { self->watch(); }).detach();
}

void HealthMonitor::watch() {
  c10d::Store& store = *watch_store_;
  const int n = env_.world_size, next = (env_.rank + 1) % n;
  const std::string mine = key("hb", env_.rank);
  std::int64_t seen = -1;
  auto changed = SteadyClock::now();
  while (!stopped_) {
    std::string verdict;
    try {
      store.add(mine, 1);
      if (store.check({kFailureKey})) {
        verdict = from_bytes(store.get(kFailureKey));
      } else if (n > 1 && !store.check({key("left", next)})) {
        const std::int64_t beats = store.add(key("hb", next), 0);
        if (beats != seen) {
          seen = beats;
          changed = SteadyClock::now();
        } else if (SteadyClock::now() - changed > stall_limit_ && !store.check({key("abort", next)})) {
          const std::string mine_verdict = "rank " + std::to_string(next) + " stopped: no heartbeat for " +
                                           seconds_text(stall_limit_) +
                                           " (killed, stopped, or its machine is unreachable)";
          verdict = from_bytes(store.compareSet(kFailureKey, {}, to_bytes(mine_verdict)));  // the first verdict wins
        }
      }
    } catch (const std::exception& e) {
      if (stopped_) return;
      verdict = store_host(env_) + " is gone: the store does not answer (" + error_text(e) + ")";
    }
    if (!verdict.empty()) {
      if (!stopped_) on_failure_(verdict);
      return;
    }
    std::this_thread::sleep_for(heartbeat_);
  }
}

namespace {

// The verdict after a collective failed on `env.rank` (see HealthMonitor::diagnose); unbounded.
std::string find_failed_rank(c10d::Store& store, const DistEnvironment& env, Millis heartbeat,
                             const std::string& my_error) {
  const int n = env.world_size;
  auto counters = [&] {
    std::vector<std::int64_t> v(static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) v[static_cast<std::size_t>(r)] = store.add(key("hb", r), 0);
    return v;
  };
  // Once the verdict is known: say so, and when this process hosts the store, stay until every
  // other rank has read it too or stopped beating for 2 heartbeats.
  auto settle = [&](std::string verdict) {
    store.set(key("diagnosed", env.rank), to_bytes("1"));
    if (env.agent_store || env.rank != 0) return verdict;
    const auto start = SteadyClock::now(), deadline = start + 3 * heartbeat + Millis(2000);
    std::vector<std::int64_t> prev = counters();
    std::vector<SteadyClock::time_point> moved(static_cast<std::size_t>(n), start);
    while (SteadyClock::now() < deadline) {
      bool settled = true;
      const std::vector<std::int64_t> now = counters();
      for (int r = 1; r < n; ++r) {
        const auto i = static_cast<std::size_t>(r);
        if (store.check({key("diagnosed", r)}) || store.check({key("left", r)})) continue;
        if (now[i] != prev[i]) prev[i] = now[i], moved[i] = SteadyClock::now();
        if (SteadyClock::now() - moved[i] < 2 * heartbeat) settled = false;
      }
      if (settled) break;
      std::this_thread::sleep_for(Millis(50));
    }
    return verdict;
  };
  store.set(key("abort", env.rank), to_bytes(my_error));
  const std::vector<std::int64_t> first = counters();
  std::vector<bool> advanced(static_cast<std::size_t>(n), false);
  const auto deadline = SteadyClock::now() + 3 * heartbeat;
  while (true) {
    if (store.check({kFailureKey})) return settle(from_bytes(store.get(kFailureKey)));
    const std::vector<std::int64_t> now = counters();
    for (std::size_t r = 0; r < now.size(); ++r) advanced[r] = advanced[r] || now[r] != first[r];
    if (SteadyClock::now() >= deadline) break;
    std::this_thread::sleep_for(std::min(Millis(50), heartbeat / 2));
  }
  std::string dead;
  for (int r = 0; r < n; ++r) {
    if (advanced[static_cast<std::size_t>(r)] || store.check({key("abort", r)}) || store.check({key("left", r)})) continue;
    dead += (dead.empty() ? "" : ", ") + std::to_string(r);
  }
  const std::string verdict =
      dead.empty() ? "a collective failed on rank " + std::to_string(env.rank) + " with every rank alive: " + my_error
                   : (dead.find(',') == std::string::npos ? "rank " : "ranks ") + dead +
                         " stopped (no heartbeat, no notice of giving up)";
  return settle(from_bytes(store.compareSet(kFailureKey, {}, to_bytes(verdict))));
}

}  // namespace

std::string HealthMonitor::diagnose(const std::string& my_error) {
  stopped_ = true;  // the verdict is this thread's to give now
  const bool hosts_store = !env_.agent_store && env_.rank == 0;
  const Millis limit = (hosts_store ? 2 : 1) * (3 * heartbeat_ + Millis(2000));
  try {
    auto verdict = within(limit, [store = diag_store_, env = env_, hb = heartbeat_, my_error] {
      return find_failed_rank(*store, env, hb, my_error);
    });
    if (verdict) return *verdict;
    return "the store does not answer, so " + store_host(env_) +
           " is unreachable: the network is partitioned, or this rank is the one cut off";
  } catch (const std::exception& e) {
    return store_host(env_) + " is gone: the store does not answer (" + error_text(e) + ")";
  }
}

void HealthMonitor::report_self_failure(const std::string& why) {
  stopped_ = true;
  const bool hosts_store = !env_.agent_store && env_.rank == 0;
  const std::string verdict = "rank " + std::to_string(env_.rank) + " failed: " + why;
  try {
    within(Millis(2000) + (hosts_store ? 3 * heartbeat_ + Millis(2000) : Millis(0)),
           [store = diag_store_, env = env_, hb = heartbeat_, why, verdict] {
             store->set(key("abort", env.rank), to_bytes(why));
             store->compareSet(kFailureKey, {}, to_bytes(verdict));
             if (env.agent_store || env.rank != 0) return true;
             // The store lives in this process: give the others time to read the verdict.
             const auto deadline = SteadyClock::now() + 3 * hb + Millis(2000);
             while (SteadyClock::now() < deadline) {
               bool all = true;
               for (int r = 1; r < env.world_size; ++r)
                 all = all && (store->check({key("diagnosed", r)}) || store->check({key("left", r)}));
               if (all) break;
               std::this_thread::sleep_for(Millis(50));
             }
             return true;
           });
  } catch (const std::exception&) {
    // the store is gone too: nobody is left to tell
  }
}

void HealthMonitor::leave() {
  if (stopped_.exchange(true)) return;
  try {
    within(Millis(2000), [store = diag_store_, rank = env_.rank] {
      store->set(key("left", rank), to_bytes("1"));
      return true;
    });
  } catch (const std::exception&) {
  }
}

}  // namespace satcap::dist
