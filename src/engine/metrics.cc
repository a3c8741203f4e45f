#include "engine/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace cachalot::engine {

void Histogram::observe(double value) {
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[static_cast<std::size_t>(bucket)];
  ++count_;
  sum_ += value;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
}

namespace {

std::vector<double> latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

void counter(std::string& out, const char* name, const char* help, uint64_t value) {
  out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, value);
}

void gauge(std::string& out, const char* name, const char* help, double value) {
  out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, value);
}

// One sample per attention rank, labelled rank="r".
template <typename T>
void per_rank(std::string& out, const char* name, const char* type, const char* help, const std::vector<T>& values) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  for (size_t r = 0; r < values.size(); ++r) out += fmt::format("{}{{rank=\"{}\"}} {}\n", name, r, values[r]);
}

}  // namespace

Metrics::Metrics() : ttft_(latency_buckets()), inter_token_(latency_buckets()), e2e_(latency_buckets()) {}

void Metrics::observe_ttft(double s) {
  std::lock_guard lock(mutex_);
  ttft_.observe(s);
}

void Metrics::observe_inter_token(double s) {
  std::lock_guard lock(mutex_);
  inter_token_.observe(s);
}

void Metrics::observe_e2e(double s) {
  std::lock_guard lock(mutex_);
  e2e_.observe(s);
}

MetricsSnapshot Metrics::snapshot() const {
  std::lock_guard lock(mutex_);
  return values_;
}

std::string Metrics::render_prometheus() const {
  std::lock_guard lock(mutex_);
  const MetricsSnapshot& v = values_;
  std::string out;
  counter(out, "cachalot_requests_finished_total", "Requests that ran to a stop or length limit.", v.requests_finished);
  counter(out, "cachalot_requests_cancelled_total", "Requests cancelled (client gone or shutdown).", v.requests_cancelled);
  counter(out, "cachalot_requests_rejected_total", "Requests refused because the queue was full.", v.requests_rejected);
  counter(out, "cachalot_requests_failed_total", "Requests that ended in an error.", v.requests_failed);
  counter(out, "cachalot_prompt_tokens_total", "Prompt tokens of admitted requests.", v.prompt_tokens);
  counter(out, "cachalot_prompt_cache_hit_tokens_total", "Prompt tokens served from the prefix cache.",
          v.prompt_cache_hit_tokens);
  counter(out, "cachalot_generation_tokens_total", "Tokens generated.", v.generation_tokens);
  counter(out, "cachalot_preemptions_total", "Sequences preempted (blocks freed, recomputed later).", v.preemptions);
  gauge(out, "cachalot_queue_depth", "Requests waiting for admission.", static_cast<double>(v.waiting));
  gauge(out, "cachalot_running_requests", "Requests in the running batch.", static_cast<double>(v.running));
  gauge(out, "cachalot_batch_size", "Sequences in the last engine step.", static_cast<double>(v.last_batch_sequences));
  gauge(out, "cachalot_batch_tokens", "Tokens in the last engine step.", static_cast<double>(v.last_batch_tokens));
  gauge(out, "cachalot_kv_blocks_total", "KV cache blocks (64 tokens each).", static_cast<double>(v.kv_blocks_total));
  gauge(out, "cachalot_kv_blocks_used", "KV cache blocks held by sequences.", static_cast<double>(v.kv_blocks_used));
  gauge(out, "cachalot_kv_blocks_cached", "Unused KV blocks kept for prefix reuse.", static_cast<double>(v.kv_blocks_cached));
  gauge(out, "cachalot_kv_usage_ratio", "Fraction of KV blocks held by sequences.",
        v.kv_blocks_total ? static_cast<double>(v.kv_blocks_used) / static_cast<double>(v.kv_blocks_total) : 0.0);
  per_rank(out, "cachalot_attention_rank_admitted_total", "counter",
           "Sequences admitted to each attention rank (EP ranks as processes hold their own KV blocks).", v.rank_admitted);
  per_rank(out, "cachalot_attention_rank_running", "gauge", "Sequences running on each attention rank.", v.rank_running);
  counter(out, "cachalot_eplb_rebalances_total", "Expert rebalances started (EPLB).", v.eplb_rebalances);
  gauge(out, "cachalot_eplb_placement_version", "Expert placement in use (0: the initial one).",
        static_cast<double>(v.expert_placement_version));
  gauge(out, "cachalot_eplb_balancedness", "Mean / max EP rank load of the placement in use on the load window.",
        v.eplb_balancedness);
  if (v.expert_load_layers > 0) {
    out += "# HELP cachalot_expert_load Tokens routed to each expert over the load window.\n"
           "# TYPE cachalot_expert_load gauge\n";
    const size_t experts = v.expert_loads.size() / static_cast<size_t>(v.expert_load_layers);
    for (size_t i = 0; i < v.expert_loads.size(); ++i)
      out += fmt::format("cachalot_expert_load{{layer=\"{}\",expert=\"{}\"}} {}\n", i / experts, i % experts,
                         v.expert_loads[i]);
  }
  ttft_.render(out, "cachalot_time_to_first_token_seconds", "Time from arrival to the first generated token.");
  inter_token_.render(out, "cachalot_inter_token_latency_seconds", "Time between consecutive tokens of a request.");
  e2e_.render(out, "cachalot_request_latency_seconds", "Time from arrival to the last token.");
  return out;
}

}  // namespace cachalot::engine
