// A deployment scenario for the cost model: one day of load (24 hourly figures), what a node
// sustains in prefill and in decode, what a node costs, what tokens sell for, and how the fleet
// scales. docs/cost.md documents the file schema (YAML; JSON is YAML too) field by field.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cachalot::cost {

inline constexpr int kHours = 24;
using Hourly = std::array<double, kHours>;

// The day's load, hour by hour (hour 0 = the first hour of the day the curve describes).
struct Load {
  Hourly input_tokens_per_s{};   // prompt tokens arriving, cache hits included
  Hourly cache_hit_ratio{};      // fraction of them found in the KV cache, in [0, 1]
  Hourly output_tokens_per_s{};  // tokens generated
  // Per request; when given, the report adds how many requests decode at once.
  std::optional<double> output_speed_tokens_per_s;
};

// What the prefill throughput counts: all input tokens (DeepSeek's published figure, cache hits
// included) or only the ones computed (cache misses; what `cachalot bench model` measures).
enum class PrefillBasis { kInput, kCacheMiss };

struct Node {
  std::optional<double> prefill_tokens_per_s;  // absent: must come from --from-bench
  PrefillBasis prefill_basis = PrefillBasis::kInput;
  std::optional<double> decode_tokens_per_s;
  double price_per_hour = 0;  // the node: gpus x price_per_gpu_hour, or price_per_node_hour
  int64_t gpus = 0;           // informational when priced per node; 0 if not given
};

// USD per million tokens.
struct Prices {
  double input_cache_hit = 0, input_cache_miss = 0, output = 0;
};

enum class Policy { kStatic, kAutoscale };

struct Scaling {
  Policy policy = Policy::kAutoscale;
  // true: a role runs a whole number of nodes each hour. false: node time in proportion to the
  // load, the accounting behind DeepSeek's published day (their per-node throughput is tokens
  // divided by node time, so dividing by it again recovers their node time).
  bool whole_nodes = true;
  double headroom = 0;              // capacity kept above demand, as a fraction (0.2 = 20%)
  double min_prefill_nodes = 0, min_decode_nodes = 0;
  double scale_up_lag_hours = 0;    // a node must be started (and paid) this long before needed
};

struct Scenario {
  std::string name;
  Load load;
  Node node;
  Prices prices;
  Scaling scaling;
};

// Parses a scenario from YAML (or JSON) text. Every error is Error(kInvalidArgument) naming
// `origin` and the field at fault: a missing field, an unknown one (typos), a negative rate, a
// ratio outside [0, 1], a curve that is not 24 entries, a value that is not a number.
Scenario parse_scenario(std::string_view text, std::string_view origin = "scenario");
Scenario load_scenario(const std::string& path);

}  // namespace cachalot::cost
