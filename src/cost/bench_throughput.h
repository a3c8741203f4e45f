// Per-node throughputs measured by our own benchmarks, so a scenario can plan a CPU deployment
// of cachalot with figures from this machine: the JSON lines `cachalot bench model --json` or
// `cachalot bench serve --json` print.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "cost/scenario.h"

namespace cachalot::cost {

struct BenchThroughput {
  std::optional<double> prefill_tokens_per_s;
  PrefillBasis prefill_basis = PrefillBasis::kCacheMiss;
  std::string prefill_case;  // the benchmark case the figure came from
  std::optional<double> decode_tokens_per_s;
  std::string decode_case;
};

// From `bench model`: the best prefill_throughput (computed tokens, so counted as cache misses)
// and the best decode_throughput over its batch sizes. From `bench serve`: the saturated run's
// (rate=max) input and output throughput, a node doing both at once, so each understates what
// a node given to one role sustains (a conservative plan). Model figures win when a file has
// both. Error(kInvalidArgument) naming the line for text that is not JSON lines, and when no
// throughput is in the file at all.
BenchThroughput parse_bench_throughput(std::string_view text, std::string_view origin);

// Replaces the scenario's node throughputs with the measured ones that exist.
void apply_bench_throughput(Scenario& scenario, const BenchThroughput& bench);

}  // namespace cachalot::cost
