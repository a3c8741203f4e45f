#include "core/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace cachalot {
namespace {

thread_local bool t_in_parallel = false;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Polls `done` for up to spin_us microseconds; returns whether it became true.
template <typename Pred>
bool spin_until(Pred done, int spin_us) {
  if (done()) return true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us);
  while (true) {
    for (int i = 0; i < 64; ++i) {
      cpu_relax();
      if (done()) return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

struct RegionGuard {
  RegionGuard() { t_in_parallel = true; }
  ~RegionGuard() { t_in_parallel = false; }
};

}  // namespace

int available_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(int num_threads, int spin_us) : spin_us_(spin_us) {
  CACHALOT_CHECK_ARG(num_threads >= 1, "thread pool needs at least 1 thread, got {}", num_threads);
  CACHALOT_CHECK_ARG(spin_us >= 0, "thread pool spin time must be >= 0 us, got {}", spin_us);
  // More threads than CPUs: a spinning idle thread would take the core a working one needs.
  if (num_threads > available_cpus()) spin_us_ = 0;
  workers_.reserve(num_threads - 1);
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(2);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

namespace {

// The global pool lives behind a pointer so that a forked child (an EP rank process) can get a
// fresh one: fork copies the pool object but not its worker threads, and a parallel_for on it
// would wait forever for them.
std::atomic<ThreadPool*> g_global_pool{nullptr};
std::mutex g_global_pool_mutex;
ThreadPool* g_pre_fork_pool = nullptr;  // the parent's pool, kept reachable in the child

int global_pool_threads() {
  if (const char* env = std::getenv("CACHALOT_NUM_THREADS")) {
    const int n = std::atoi(env);
    CACHALOT_CHECK_ARG(n >= 1, "CACHALOT_NUM_THREADS must be a positive integer, got '{}'", env);
    return n;
  }
  return available_cpus();
}

}  // namespace

ThreadPool& ThreadPool::global() {
  if (ThreadPool* pool = g_global_pool.load(std::memory_order_acquire)) return *pool;
  std::lock_guard lock(g_global_pool_mutex);
  if (ThreadPool* pool = g_global_pool.load(std::memory_order_relaxed)) return *pool;
  static const int registered = pthread_atfork(nullptr, nullptr, [] {
    g_pre_fork_pool = g_global_pool.exchange(nullptr);
    new (&g_global_pool_mutex) std::mutex();  // it may have been held by a thread the child lacks
  });
  (void)registered;
  auto* pool = new ThreadPool(global_pool_threads());  // never destroyed: threads may use it during exit
  g_global_pool.store(pool, std::memory_order_release);
  return *pool;
}

bool ThreadPool::in_parallel_region() { return t_in_parallel; }

ThreadPool::InlineScope::InlineScope() : previous_(t_in_parallel) { t_in_parallel = true; }
ThreadPool::InlineScope::~InlineScope() { t_in_parallel = previous_; }

void ThreadPool::run(int64_t begin, int64_t end, int64_t grain, Schedule schedule, Invoke invoke,
                     void* ctx) {
  CACHALOT_CHECK_ARG(grain >= 1, "parallel_for grain must be >= 1, got {}", grain);
  if (end <= begin) return;
  const int64_t num_chunks = (end - begin + grain - 1) / grain;
  const int participants = static_cast<int>(std::min<int64_t>(num_threads(), num_chunks));
  if (participants == 1 || t_in_parallel) {
    // Nested or too small to split: run inline, no hand-over cost, no extra threads. Dynamic
    // scheduling still hands the body grain-sized chunks, as it promises.
    const bool outer = !t_in_parallel;
    t_in_parallel = true;
    try {
      if (schedule == Schedule::kStatic) {
        invoke(ctx, begin, end, 0);
      } else {
        for (int64_t b = begin; b < end; b += grain) invoke(ctx, b, std::min(end, b + grain), 0);
      }
    } catch (...) {
      if (outer) t_in_parallel = false;
      throw;
    }
    if (outer) t_in_parallel = false;
    return;
  }

  std::lock_guard lock(submit_mutex_);
  // Seqlock publish: an odd generation marks fields being written; the even one after it
  // releases them. Workers that read an odd value, or see it change under them, look again.
  const uint64_t generation = generation_.load(std::memory_order_relaxed);
  generation_.store(generation + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  invoke_.store(invoke, std::memory_order_relaxed);
  ctx_.store(ctx, std::memory_order_relaxed);
  begin_.store(begin, std::memory_order_relaxed);
  end_.store(end, std::memory_order_relaxed);
  grain_.store(grain, std::memory_order_relaxed);
  num_chunks_.store(num_chunks, std::memory_order_relaxed);
  schedule_.store(schedule, std::memory_order_relaxed);
  participants_.store(participants, std::memory_order_relaxed);
  next_chunk_.store(0, std::memory_order_relaxed);
  remaining_.store(participants - 1, std::memory_order_relaxed);
  failed_.store(false, std::memory_order_relaxed);
  error_ = nullptr;
  generation_.store(generation + 2, std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_seq_cst) > 0) generation_.notify_all();

  execute_share(0);

  if (!spin_until([&] { return remaining_.load(std::memory_order_acquire) == 0; }, spin_us_)) {
    for (int r = remaining_.load(std::memory_order_acquire); r != 0;
         r = remaining_.load(std::memory_order_acquire))
      remaining_.wait(r, std::memory_order_acquire);
  }
  if (failed_.load(std::memory_order_acquire)) std::rethrow_exception(error_);
}

void ThreadPool::execute_share(int index) {
  RegionGuard guard;
  const Invoke invoke = invoke_.load(std::memory_order_relaxed);
  void* ctx = ctx_.load(std::memory_order_relaxed);
  const int64_t begin = begin_.load(std::memory_order_relaxed);
  const int64_t end = end_.load(std::memory_order_relaxed);
  const int64_t grain = grain_.load(std::memory_order_relaxed);
  const int64_t chunks = num_chunks_.load(std::memory_order_relaxed);
  const int participants = participants_.load(std::memory_order_relaxed);
  try {
    if (schedule_.load(std::memory_order_relaxed) == Schedule::kStatic) {
      const int64_t first = chunks * index / participants;
      const int64_t last = chunks * (index + 1) / participants;
      if (first < last) invoke(ctx, begin + first * grain, std::min(end, begin + last * grain), index);
    } else {
      for (int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed); c < chunks;
           c = next_chunk_.fetch_add(1, std::memory_order_relaxed)) {
        if (failed_.load(std::memory_order_relaxed)) break;
        invoke(ctx, begin + c * grain, std::min(end, begin + (c + 1) * grain), index);
      }
    }
  } catch (...) {
    bool expected = false;
    if (failed_.compare_exchange_strong(expected, true)) error_ = std::current_exception();
  }
}

void ThreadPool::wait_for_generation(uint64_t seen) {
  auto changed = [&] { return generation_.load(std::memory_order_acquire) != seen; };
  if (spin_until(changed, spin_us_)) return;
  sleeping_.fetch_add(1, std::memory_order_seq_cst);
  while (generation_.load(std::memory_order_seq_cst) == seen) generation_.wait(seen);
  sleeping_.fetch_sub(1, std::memory_order_relaxed);
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  while (true) {
    wait_for_generation(seen);
    if (stop_.load(std::memory_order_acquire)) return;
    // Seqlock read: the generation (even: published), whether we take part, then the
    // generation again. A job we take part in cannot be replaced before we finish it, because
    // its caller waits for us.
    const uint64_t generation = generation_.load(std::memory_order_acquire);
    if (generation & 1) continue;  // being published; look again
    const int participants = participants_.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (generation_.load(std::memory_order_relaxed) != generation) {
      continue;  // a newer job was published meanwhile; look again
    }
    seen = generation;
    if (index >= participants) continue;
    execute_share(index);
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) remaining_.notify_one();
  }
}

}  // namespace cachalot
