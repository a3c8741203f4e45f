#include "bench/bandwidth_probe.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "bench/bench_report.h"
#include "core/thread_pool.h"

namespace cachalot::bench {
namespace {

// Eight independent accumulators so the loop is bound by loads, not by add latency; the
// compiler vectorises it for the baseline ISA (which is enough to saturate DRAM).
uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t s[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += p[i + j];
  for (; i < n; ++i) s[0] += p[i];
  uint64_t total = 0;
  for (uint64_t v : s) total += v;
  return total;
}

}  // namespace

double dram_working_set_bytes() {
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  return std::clamp(1.5 * static_cast<double>(std::max(l3, 0L)), 192.0 * (1 << 20), 768.0 * (1 << 20));
}

double read_bandwidth_gbs(size_t bytes, int repeats) {
  const size_t words = bytes / sizeof(uint64_t);
  std::vector<uint64_t> buffer(words);
  ThreadPool& pool = ThreadPool::global();
  pool.parallel_for(0, static_cast<int64_t>(words), [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) buffer[i] = static_cast<uint64_t>(i);
  });
  std::vector<uint64_t> sink(pool.num_threads());
  const double ns = median_ns(
      [&] {
        pool.parallel_for(0, static_cast<int64_t>(words), [&](int64_t b, int64_t e, int t) {
          sink[t] += sum_words(buffer.data() + b, static_cast<size_t>(e - b));
        });
      },
      repeats, 1);
  volatile uint64_t keep = sink[0];
  (void)keep;
  return static_cast<double>(words * sizeof(uint64_t)) / ns;
}

}  // namespace cachalot::bench
