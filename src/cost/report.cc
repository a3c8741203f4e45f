#include "cost/report.h"

#include "core/error.h"

namespace cachalot::cost {

Report evaluate(const Scenario& scenario) {
  const Node& node = scenario.node;
  if (!node.prefill_tokens_per_s)
    raise(ErrorKind::kInvalidArgument, "{}: node.prefill_tokens_per_s: missing (give it in the scenario or use --from-bench FILE)", scenario.name);
  if (!node.decode_tokens_per_s)
    raise(ErrorKind::kInvalidArgument, "{}: node.decode_tokens_per_s: missing (give it in the scenario or use --from-bench FILE)", scenario.name);

  Report r;
  r.scenario = scenario;
  const Load& load = scenario.load;
  Hourly prefill_demand{};
  for (int h = 0; h < kHours; ++h) {
    const double miss_share = node.prefill_basis == PrefillBasis::kCacheMiss ? 1.0 - load.cache_hit_ratio[h] : 1.0;
    prefill_demand[h] = load.input_tokens_per_s[h] * miss_share;
  }
  const Scaling& scaling = scenario.scaling;
  r.prefill = plan_role(prefill_demand, *node.prefill_tokens_per_s, scaling.min_prefill_nodes, scaling);
  r.decode = plan_role(load.output_tokens_per_s, *node.decode_tokens_per_s, scaling.min_decode_nodes, scaling);

  for (int h = 0; h < kHours; ++h) {
    r.nodes[h] = r.prefill.nodes[h] + r.decode.nodes[h];
    r.peak_nodes = std::max(r.peak_nodes, r.nodes[h]);
    const double input = load.input_tokens_per_s[h] * 3600.0;
    r.input_tokens += input;
    r.cache_hit_tokens += input * load.cache_hit_ratio[h];
    r.output_tokens += load.output_tokens_per_s[h] * 3600.0;
  }
  r.node_hours = r.prefill.node_hours + r.decode.node_hours;
  r.average_nodes = r.node_hours / kHours;
  r.static_nodes = r.prefill.static_nodes + r.decode.static_nodes;
  r.static_node_hours = r.prefill.static_node_hours + r.decode.static_node_hours;
  r.cost = r.node_hours * node.price_per_hour;
  r.static_cost = r.static_node_hours * node.price_per_hour;
  r.autoscaled_node_hours = r.prefill.autoscaled_node_hours + r.decode.autoscaled_node_hours;
  r.autoscaled_cost = r.autoscaled_node_hours * node.price_per_hour;
  r.savings = r.static_cost - r.autoscaled_cost;

  const Prices& p = scenario.prices;
  r.revenue_cache_hit = r.cache_hit_tokens / 1e6 * p.input_cache_hit;
  r.revenue_cache_miss = (r.input_tokens - r.cache_hit_tokens) / 1e6 * p.input_cache_miss;
  r.revenue_output = r.output_tokens / 1e6 * p.output;
  r.revenue = r.revenue_cache_hit + r.revenue_cache_miss + r.revenue_output;
  // Prices per node-hour are positive (the parser insists), so cost > 0 unless there is no load
  // and no minimum fleet at all.
  r.margin = r.cost > 0 ? (r.revenue - r.cost) / r.cost : 0;
  r.static_margin = r.static_cost > 0 ? (r.revenue - r.static_cost) / r.static_cost : 0;

  if (load.output_speed_tokens_per_s) {
    Hourly c{};
    for (int h = 0; h < kHours; ++h) c[h] = load.output_tokens_per_s[h] / *load.output_speed_tokens_per_s;
    r.concurrent_requests = c;
  }
  return r;
}

}  // namespace cachalot::cost
