// The day's economics of a scenario: nodes per hour for prefill and decode, node-hours, cost,
// theoretical revenue (every token billed at the list prices), margin, and what autoscaling
// saves against a fleet sized for the peak all day.
#pragma once

#include <optional>
#include <string>

#include "cost/capacity.h"
#include "cost/scenario.h"

namespace cachalot::cost {

struct Report {
  Scenario scenario;  // as evaluated (throughputs filled in)
  RolePlan prefill, decode;
  Hourly nodes{};     // prefill + decode in service, per hour
  double input_tokens = 0, cache_hit_tokens = 0, output_tokens = 0;  // over the day
  double node_hours = 0, average_nodes = 0, peak_nodes = 0;
  double static_node_hours = 0, static_nodes = 0;  // the peak-sized fleet
  double autoscaled_node_hours = 0;                // the autoscaled fleet, whatever the policy
  double cost = 0;                                 // USD per day, under the policy
  double static_cost = 0, autoscaled_cost = 0;     // under either policy
  double savings = 0;                              // static_cost - autoscaled_cost
  double revenue_cache_hit = 0, revenue_cache_miss = 0, revenue_output = 0, revenue = 0;
  double margin = 0, static_margin = 0;            // (revenue - cost) / cost
  std::optional<Hourly> concurrent_requests;       // decoding at once, if output speed is given
};

// Error(kInvalidArgument) if a node throughput is still missing (neither in the scenario nor
// from a benchmark).
Report evaluate(const Scenario& scenario);

// One JSON object: inputs, per-hour arrays, and the day's totals.
std::string report_json(const Report& report);
// The terminal table: per hour, then the totals.
std::string report_table(const Report& report);

}  // namespace cachalot::cost
