// ThreadPool: persistent workers that run parallel_for bodies. The calling thread takes part
// (a pool of N threads starts N-1 workers), idle workers spin briefly before sleeping on a
// futex so back-to-back kernels hand over in well under a microsecond, and a parallel_for
// issued from inside a body runs inline on that thread: nesting never oversubscribes.
//
//   pool.parallel_for(0, rows, [&](int64_t lo, int64_t hi, int thread) { ... });
//
// Static scheduling gives each participating thread one contiguous range (good for equal-cost
// items: cache-friendly, no shared counter); dynamic scheduling hands out `grain`-sized chunks
// from an atomic counter (good for uneven items). An exception thrown by a body is rethrown
// to the caller after every thread has finished.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace cachalot {

enum class Schedule { kStatic, kDynamic };

class ThreadPool {
 public:
  // num_threads counts the caller; 1 runs everything inline. spin_us is how long an idle thread
  // polls for new work before it sleeps; a pool with more threads than available CPUs never
  // spins (it would steal the cores its working threads need).
  explicit ThreadPool(int num_threads, int spin_us = 100);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // body(int64_t begin, int64_t end, int thread_index) over [begin, end) split in ranges that
  // are multiples of grain (except the last). thread_index is in [0, num_threads()) and unique
  // among the threads running one parallel_for, so it can index per-thread scratch.
  template <typename Body>
  void parallel_for(int64_t begin, int64_t end, Body&& body, Schedule schedule = Schedule::kStatic,
                    int64_t grain = 1) {
    auto invoke = [](void* ctx, int64_t b, int64_t e, int t) { (*static_cast<Body*>(ctx))(b, e, t); };
    run(begin, end, grain, schedule, invoke, static_cast<void*>(&body));
  }

  // The process-wide pool: CACHALOT_NUM_THREADS threads, else one per CPU this process may use.
  static ThreadPool& global();
  // True while the current thread runs a parallel_for body (of any pool) or holds an
  // InlineScope.
  static bool in_parallel_region();

  // While alive, parallel_for calls made on this thread run inline, as nested ones do. For
  // threads that are themselves parallel workers (EP ranks as threads, as many as the cores):
  // their kernels would otherwise all queue on the one global pool, each rank waiting for the
  // pool's worker while the other ranks need the same cores.
  class InlineScope {
   public:
    InlineScope();
    ~InlineScope();
    InlineScope(const InlineScope&) = delete;
    InlineScope& operator=(const InlineScope&) = delete;

   private:
    bool previous_;
  };

 private:
  using Invoke = void (*)(void*, int64_t, int64_t, int);

  void run(int64_t begin, int64_t end, int64_t grain, Schedule schedule, Invoke invoke, void* ctx);
  void worker_loop(int index);
  void execute_share(int index);
  void wait_for_generation(uint64_t seen);

  std::vector<std::thread> workers_;
  int spin_us_;
  std::mutex submit_mutex_;  // one parallel_for at a time per pool

  // The current job. Fields are atomics published under a seqlock on generation_ (odd while
  // being written), so a worker that wakes late and did not take part in one job cannot act on
  // a half-published next one.
  std::atomic<uint64_t> generation_{0};
  std::atomic<Invoke> invoke_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int64_t> begin_{0}, end_{0}, grain_{1}, num_chunks_{0};
  std::atomic<int> participants_{0};
  std::atomic<Schedule> schedule_{Schedule::kStatic};
  std::atomic<int64_t> next_chunk_{0};
  std::atomic<int> remaining_{0};     // workers of the current job not yet done
  std::atomic<int> sleeping_{0};      // workers blocked in futex wait
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

// How many CPUs this process may run on (sched_getaffinity), at least 1.
int available_cpus();

}  // namespace cachalot
