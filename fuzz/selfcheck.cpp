// Two targets that only the replay driver has, so that the tests prove the driver fails (the
// tests fuzz_replay_fails_on_*, marked WILL_FAIL): one throws an exception that is not a
// satcap::Error, one never returns.
#include <chrono>
#include <stdexcept>
#include <thread>

#include "fuzz_target.h"

SATCAP_FUZZ_TARGET(selfcheck_throw) { throw std::logic_error("not a satcap::Error"); }

SATCAP_FUZZ_TARGET(selfcheck_hang) {
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}
