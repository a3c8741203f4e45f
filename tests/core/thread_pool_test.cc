#include "core/thread_pool.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/error.h"

namespace cachalot {
namespace {

// Every index visited exactly once, thread indices unique per call and in range.
void check_coverage(ThreadPool& pool, int64_t begin, int64_t end, Schedule schedule, int64_t grain) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(std::max<int64_t>(end - begin, 0)));
  std::vector<std::atomic<int>> thread_seen(pool.num_threads());
  pool.parallel_for(begin, end, [&](int64_t b, int64_t e, int t) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, pool.num_threads());
    if (schedule == Schedule::kStatic) {
      EXPECT_EQ(thread_seen[t].fetch_add(1), 0) << "thread " << t << " ran twice";
    }
    EXPECT_TRUE(e - b <= grain || schedule == Schedule::kStatic);
    EXPECT_TRUE((b - begin) % grain == 0);
    for (int64_t i = b; i < e; ++i) hits[i - begin].fetch_add(1);
  }, schedule, grain);
  for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << begin + static_cast<int64_t>(i);
}

TEST(ThreadPool, CoversRangesExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (auto schedule : {Schedule::kStatic, Schedule::kDynamic})
      for (int64_t n : {0, 1, 2, 7, 64, 1000})
        for (int64_t grain : {1, 3, 64}) check_coverage(pool, 5, 5 + n, schedule, grain);
  }
}

TEST(ThreadPool, ManySmallJobsBackToBack) {
  ThreadPool pool(4);
  std::atomic<int64_t> total{0};
  for (int job = 0; job < 20000; ++job)
    pool.parallel_for(0, 4, [&](int64_t b, int64_t e, int) { total.fetch_add(e - b); },
                      job % 2 ? Schedule::kDynamic : Schedule::kStatic);
  EXPECT_EQ(total.load(), 80000);
}

TEST(ThreadPool, WakesSleepingWorkers) {
  ThreadPool pool(3, /*spin_us=*/0);  // workers sleep at once
  for (int round = 0; round < 50; ++round) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    std::atomic<int> count{0};
    pool.parallel_for(0, 3, [&](int64_t b, int64_t e, int) { count.fetch_add(static_cast<int>(e - b)); });
    ASSERT_EQ(count.load(), 3);
  }
}

TEST(ThreadPool, NestedCallsRunInlineWithoutDeadlock) {
  ThreadPool pool(4);
  std::atomic<int64_t> total{0};
  pool.parallel_for(0, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      EXPECT_TRUE(ThreadPool::in_parallel_region());
      pool.parallel_for(0, 100, [&](int64_t b2, int64_t e2, int t2) {
        EXPECT_EQ(t2, 0);  // inline: one range, no other threads
        total.fetch_add(e2 - b2);
      });
    }
  });
  EXPECT_EQ(total.load(), 800);
  EXPECT_FALSE(ThreadPool::in_parallel_region());
}

TEST(ThreadPool, InlineScopeRunsCallsOnTheCallingThreadUntilItEnds) {
  ThreadPool pool(4);
  const std::thread::id me = std::this_thread::get_id();
  {
    ThreadPool::InlineScope scope;
    EXPECT_TRUE(ThreadPool::in_parallel_region());
    int calls = 0;
    pool.parallel_for(0, 1000, [&](int64_t b, int64_t e, int t) {
      EXPECT_EQ(std::this_thread::get_id(), me);
      EXPECT_EQ(t, 0);
      EXPECT_EQ(b, 0);  // static: the whole range at once
      EXPECT_EQ(e, 1000);
      ++calls;
    });
    EXPECT_EQ(calls, 1);
    {
      ThreadPool::InlineScope nested;  // scopes nest; the outer one still holds after
    }
    EXPECT_TRUE(ThreadPool::in_parallel_region());
  }
  EXPECT_FALSE(ThreadPool::in_parallel_region());
  std::atomic<int> other_threads{0};
  pool.parallel_for(0, 4, [&](int64_t, int64_t, int) {
    if (std::this_thread::get_id() != me) other_threads.fetch_add(1);
  });
  EXPECT_EQ(other_threads.load(), 3);  // the pool's workers take part again
}

TEST(ThreadPool, ExceptionsReachTheCallerAndThePoolSurvives) {
  ThreadPool pool(4);
  for (auto schedule : {Schedule::kStatic, Schedule::kDynamic}) {
    EXPECT_THROW(pool.parallel_for(0, 100, [&](int64_t b, int64_t e, int) {
      if (b <= 50 && 50 < e) throw std::runtime_error("boom");
    }, schedule), std::runtime_error);
    check_coverage(pool, 0, 100, schedule, 1);
  }
  EXPECT_THROW(pool.parallel_for(0, 1, [](int64_t, int64_t, int) { throw Error(ErrorKind::kInternal, "x"); }), Error);
  EXPECT_FALSE(ThreadPool::in_parallel_region());
}

TEST(ThreadPool, ConcurrentSubmittersAreSerialised) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> submitters;
  for (int s = 0; s < 4; ++s)
    submitters.emplace_back([&] {
      for (int job = 0; job < 2000; ++job)
        pool.parallel_for(0, 10, [&](int64_t b, int64_t e, int) { total.fetch_add(e - b); });
    });
  for (auto& t : submitters) t.join();
  EXPECT_EQ(total.load(), 4 * 2000 * 10);
}

TEST(ThreadPool, CreateAndDestroyRepeatedly) {
  for (int i = 0; i < 50; ++i) {
    ThreadPool pool(1 + i % 4, i % 2 ? 0 : 50);
    check_coverage(pool, 0, 17, Schedule::kDynamic, 2);
  }
}

TEST(ThreadPool, RejectsBadArguments) {
  EXPECT_THROW(ThreadPool(0), Error);
  ThreadPool pool(2);
  EXPECT_THROW(pool.parallel_for(0, 10, [](int64_t, int64_t, int) {}, Schedule::kStatic, 0), Error);
  EXPECT_GE(ThreadPool::global().num_threads(), 1);
  EXPECT_GE(available_cpus(), 1);
}

// A forked child (an shm EP rank) gets a global pool with live workers of its own.
TEST(ThreadPool, GlobalPoolWorksInAForkedChild) {
  std::atomic<int64_t> sum{0};
  ThreadPool::global().parallel_for(0, 1000, [&](int64_t b, int64_t e, int) { sum += e - b; });
  ASSERT_EQ(sum.load(), 1000);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::atomic<int64_t> child_sum{0};
    ThreadPool::global().parallel_for(0, 1000, [&](int64_t b, int64_t e, int) { child_sum += e - b; }, Schedule::kDynamic);
    _exit(child_sum.load() == 1000 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace cachalot
