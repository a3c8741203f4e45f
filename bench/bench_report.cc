#include "bench/bench_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace cachalot::bench {

Result make_result(std::string bench, std::string case_name, std::string metric, double value,
                   std::string unit, std::string peer, double peer_value, bool lower_is_better) {
  Result r{std::move(bench), std::move(case_name), std::move(metric), value, std::move(unit),
           std::move(peer), peer_value, 0};
  if (value > 0 && peer_value > 0) r.ratio = lower_is_better ? peer_value / value : value / peer_value;
  return r;
}

void Reporter::add(const Result& r) {
  if (!json_) {
    rows_.push_back(r);
    return;
  }
  const nlohmann::json line = {{"bench", r.bench}, {"case", r.case_name}, {"metric", r.metric},
                               {"value", r.value}, {"unit", r.unit},       {"peer", r.peer},
                               {"peer_value", r.peer_value}, {"ratio", r.ratio}};
  std::printf("%s\n", line.dump().c_str());
  std::fflush(stdout);
}

void Reporter::finish() {
  if (json_ || rows_.empty()) return;
  size_t width = 4;
  for (const auto& r : rows_) width = std::max(width, r.case_name.size());
  fmt::print("{:<{}}  {:<10} {:>12} {:<6} {:<14} {:>12}  {:>6}\n", "case", width, "metric", "value",
             "unit", "peer", "peer value", "ratio");
  for (const auto& r : rows_)
    fmt::print("{:<{}}  {:<10} {:>12.4g} {:<6} {:<14} {:>12.4g}  {:>6.2f}\n", r.case_name, width, r.metric,
               r.value, r.unit, r.peer, r.peer_value, r.ratio);
  rows_.clear();
}

double median_ns(const std::function<void()>& fn, int repeats, int inner) {
  std::vector<double> samples;
  samples.reserve(repeats);
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < inner; ++i) fn();
    const auto stop = std::chrono::steady_clock::now();
    samples.push_back(std::chrono::duration<double, std::nano>(stop - start).count() / inner);
  }
  std::nth_element(samples.begin(), samples.begin() + samples.size() / 2, samples.end());
  return samples[samples.size() / 2];
}

}  // namespace cachalot::bench

namespace cachalot::bench {

double median_ns_warm(const std::function<void()>& fn, double budget_s, int max_repeats) {
  const auto start = std::chrono::steady_clock::now();
  int warm = 0;
  while (warm < 3 || std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 0.1) {
    fn();
    ++warm;
  }
  const double once = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / warm;
  return median_ns(fn, std::clamp(static_cast<int>(budget_s / std::max(once, 1e-6)), 3, max_repeats), 1);
}

}  // namespace cachalot::bench
