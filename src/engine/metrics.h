// The engine's counters, gauges and latency histograms, rendered in the Prometheus text format
// for GET /metrics. Updated by the engine thread and read by the server's; a mutex keeps each
// update and the rendering consistent.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace cachalot::engine {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double value);
  void render(std::string& out, const std::string& name, const std::string& help) const;
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); the last is +Inf
  uint64_t count_ = 0;
  double sum_ = 0;
};

struct MetricsSnapshot {
  uint64_t requests_finished = 0, requests_cancelled = 0, requests_rejected = 0, requests_failed = 0;
  uint64_t prompt_tokens = 0, prompt_cache_hit_tokens = 0, generation_tokens = 0, preemptions = 0;
  int64_t waiting = 0, running = 0, last_batch_sequences = 0, last_batch_tokens = 0;
  int64_t kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_cached = 0;
  // Per attention rank (one entry unless EP ranks are processes, each with its own KV blocks):
  // sequences admitted so far and sequences running now.
  std::vector<uint64_t> rank_admitted;
  std::vector<int64_t> rank_running;
  // EPLB: tokens per logical expert over the load window ([layers][experts]), the balancedness
  // (mean / max rank load) of the placement in use on them, rebalances started, placement version.
  std::vector<float> expert_loads;
  int64_t expert_load_layers = 0;
  double eplb_balancedness = 0;
  uint64_t eplb_rebalances = 0;
  int64_t expert_placement_version = 0;
};

class Metrics {
 public:
  Metrics();
  // Engine side.
  template <typename F>
  void update(F&& f) {
    std::lock_guard lock(mutex_);
    f(values_);
  }
  void observe_ttft(double seconds);
  void observe_inter_token(double seconds);
  void observe_e2e(double seconds);

  MetricsSnapshot snapshot() const;
  std::string render_prometheus() const;

 private:
  mutable std::mutex mutex_;
  MetricsSnapshot values_;
  Histogram ttft_, inter_token_, e2e_;
};

}  // namespace cachalot::engine
