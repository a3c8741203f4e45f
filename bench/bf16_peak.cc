#include "bench/bf16_peak.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "core/isa.h"
#include "core/thread_pool.h"

namespace cachalot::bench {

float bf16_dot_loop(int64_t iterations);  // bf16_peak_avx512.cc

double bf16_peak_flops(int repeats) {
  if (!cpu_features().has_avx512_kernels()) return 0.0;
  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.num_threads();
  constexpr int64_t kIterations = 2'000'000;  // 12 x 32 x 2 FLOPs each: ~0.1 s per thread
  std::vector<double> rates;
  volatile float sink = 0;
  for (int r = 0; r < repeats + 1; ++r) {  // the first run warms the cores up
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(0, threads, [&](int64_t, int64_t, int) { sink = sink + bf16_dot_loop(kIterations); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) rates.push_back(static_cast<double>(threads) * kIterations * 12 * 32 * 2 / s);
  }
  std::nth_element(rates.begin(), rates.begin() + rates.size() / 2, rates.end());
  return rates[rates.size() / 2];
}

}  // namespace cachalot::bench
