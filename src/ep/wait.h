// The one waiting loop of the transports: poll a condition, spinning first (a message usually
// lands within microseconds), then yielding (ranks often outnumber cores), then sleeping in
// short steps; every few milliseconds run a health check that throws to end the wait, and give
// up with Error(kTimeout) after the deadline.
#pragma once

#include <sched.h>

#include <chrono>
#include <string>
#include <thread>

#include "core/error.h"

namespace cachalot::ep {

inline void cpu_relax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

// ready() -> bool; check() throws Error to stop waiting; describe() -> what was awaited.
template <typename Ready, typename Check, typename Describe>
void wait_until(Ready&& ready, Check&& check, std::chrono::milliseconds timeout, Describe&& describe) {
  for (int i = 0; i < 256; ++i) {
    if (ready()) return;
    cpu_relax();
  }
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now(), deadline = start + timeout;
  Clock::time_point next_check = start;
  for (;;) {
    if (ready()) return;
    const Clock::time_point now = Clock::now();
    if (now >= next_check) {
      try {
        check();
      } catch (...) {
        // The peer may have delivered and then exited (a follower told to stop does) between
        // the ready() above and the check: what arrived counts.
        if (ready()) return;
        throw;
      }
      next_check = now + std::chrono::milliseconds(5);
    }
    if (now >= deadline) {
      if (ready()) return;
      raise(ErrorKind::kTimeout, "ep: timed out after {} ms waiting for {}", timeout.count(), std::string(describe()));
    }
    // Yield at first, then sleep longer the longer the wait has lasted (an idle rank waiting for
    // work should not keep a core busy).
    const auto waited = now - start;
    if (waited < std::chrono::milliseconds(2))
      sched_yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(waited < std::chrono::milliseconds(100) ? 20
                                                            : waited < std::chrono::seconds(1)     ? 200
                                                                                                   : 1000));
  }
}

}  // namespace cachalot::ep
