// What every benchmark prints: one JSON object per line and per case/metric (DESIGN.md,
// "Machine-readable output"), or an aligned table for people. `ratio` is oriented so that
// higher is better for cachalot.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace cachalot::bench {

struct Result {
  std::string bench;       // "threadpool"
  std::string case_name;   // "static n=2 threads=2"
  std::string metric;      // "latency"
  double value = 0;        // ours
  std::string unit;        // "ns"
  std::string peer;        // "openmp"
  double peer_value = 0;   // the peer's figure from the same run
  double ratio = 0;        // higher is better for us
};

// For metrics where lower is better (latency): ratio = peer / ours; else ours / peer.
Result make_result(std::string bench, std::string case_name, std::string metric, double value,
                   std::string unit, std::string peer, double peer_value, bool lower_is_better);

class Reporter {
 public:
  explicit Reporter(bool json) : json_(json) {}
  void add(const Result& result);  // prints at once (JSON) or buffers the row (table)
  void finish();                   // prints the table, if not JSON

 private:
  bool json_;
  std::vector<Result> rows_;
};

// Median of `repeats` timings of fn, in nanoseconds per call; each timing runs fn `inner`
// times back to back so short bodies are measured above the clock's resolution.
double median_ns(const std::function<void()>& fn, int repeats, int inner);

// Median ns per call of a call that runs ~budget_s in all, after ~100 ms untimed: cores left
// idle (e.g. while a peer's threads settle) run cold and clocked down, and a sub-millisecond
// kernel timed cold measures the ramp, not itself. Repeats are clamped to [3, max_repeats].
double median_ns_warm(const std::function<void()>& fn, double budget_s, int max_repeats);

}  // namespace cachalot::bench
