// How much a parallel_for costs when the body does (almost) nothing: the hand-over latency that
// decides whether small decode-time kernels can be split across cores at all. Peers: OpenMP's
// `parallel for` (libgomp, same thread count) and spawning/joining std::threads per call.
#include <omp.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "bench/benches.h"
#include "core/thread_pool.h"
#include "core/trace.h"

namespace cachalot::bench {
namespace {

// Per-thread slots on separate cache lines so the bodies are not optimised away and do not
// false-share.
struct alignas(64) Slot {
  int64_t value = 0;
};

void settle() {
  // Let the other runtime's spinning workers go to sleep so they don't steal a core from the
  // one being measured (this machine has as few as 2).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
}

}  // namespace

void run_threadpool(const Options& options, Reporter& reporter) {
  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.num_threads();
  omp_set_num_threads(threads);
  const int repeats = options.quick ? 5 : 31;
  const int inner = options.quick ? 200 : 2000;
  std::vector<Slot> slots(threads);

  struct Case {
    std::string name;
    int64_t n;
    Schedule schedule;
  };
  const std::vector<Case> cases = {
      {"static n=threads", threads, Schedule::kStatic},
      {"static n=4096", 4096, Schedule::kStatic},
      {"dynamic n=256 grain=1", 256, Schedule::kDynamic},
  };
  for (const Case& c : cases) {
    const std::string name = c.name + " threads=" + std::to_string(threads);
    trace::Span span("threadpool " + name, "bench");
    settle();
    const double ours = median_ns(
        [&] {
          pool.parallel_for(0, c.n, [&](int64_t b, int64_t e, int t) { slots[t].value += e - b; },
                            c.schedule);
        },
        repeats, inner);
    settle();
    const int64_t n = c.n;
    const double omp = median_ns(
        [&] {
          if (c.schedule == Schedule::kStatic) {
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < n; ++i) slots[omp_get_thread_num()].value += 1;
          } else {
#pragma omp parallel for schedule(dynamic, 1)
            for (int64_t i = 0; i < n; ++i) slots[omp_get_thread_num()].value += 1;
          }
        },
        repeats, inner);
    reporter.add(make_result("threadpool", name, "latency", ours, "ns", "openmp", omp, true));
  }

  // Spawning threads per call: what a pool saves.
  settle();
  const double ours = median_ns(
      [&] { pool.parallel_for(0, threads, [&](int64_t b, int64_t e, int t) { slots[t].value += e - b; }); },
      repeats, inner);
  const double spawn = median_ns(
      [&] {
        std::vector<std::thread> ts;
        for (int t = 1; t < threads; ++t) ts.emplace_back([&, t] { slots[t].value += 1; });
        slots[0].value += 1;
        for (auto& th : ts) th.join();
      },
      repeats, std::max(1, inner / 20));
  reporter.add(make_result("threadpool", "static n=threads threads=" + std::to_string(threads), "latency",
                           ours, "ns", "thread-spawn", spawn, true));
}

}  // namespace cachalot::bench
