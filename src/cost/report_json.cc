// report_json: the whole report as one JSON object (the same figures as the table, unrounded).
#include <nlohmann/json.hpp>

#include "cost/report.h"

namespace cachalot::cost {
namespace {

nlohmann::json role_json(const RolePlan& p, double tokens_per_s_per_node) {
  return {{"tokens_per_s_per_node", tokens_per_s_per_node},
          {"demand_tokens_per_s", p.demand_tokens_per_s},
          {"needed_nodes", p.needed_nodes},
          {"nodes", p.nodes},
          {"node_hours", p.node_hours},
          {"average_nodes", p.node_hours / kHours},
          {"peak_nodes", p.peak_nodes},
          {"static_nodes", p.static_nodes},
          {"static_node_hours", p.static_node_hours},
          {"autoscaled_node_hours", p.autoscaled_node_hours}};
}

}  // namespace

std::string report_json(const Report& r) {
  const Scenario& s = r.scenario;
  nlohmann::json j = {
      {"name", s.name},
      {"policy", s.scaling.policy == Policy::kStatic ? "static" : "autoscale"},
      {"whole_nodes", s.scaling.whole_nodes},
      {"headroom", s.scaling.headroom},
      {"scale_up_lag_hours", s.scaling.scale_up_lag_hours},
      {"price_per_node_hour", s.node.price_per_hour},
      {"prefill_counts", s.node.prefill_basis == PrefillBasis::kInput ? "input" : "cache_miss"},
      {"load",
       {{"input_tokens_per_s", s.load.input_tokens_per_s},
        {"cache_hit_ratio", s.load.cache_hit_ratio},
        {"output_tokens_per_s", s.load.output_tokens_per_s}}},
      {"prefill", role_json(r.prefill, *s.node.prefill_tokens_per_s)},
      {"decode", role_json(r.decode, *s.node.decode_tokens_per_s)},
      {"nodes", r.nodes},
      {"tokens",
       {{"input", r.input_tokens},
        {"cache_hit", r.cache_hit_tokens},
        {"cache_miss", r.input_tokens - r.cache_hit_tokens},
        {"output", r.output_tokens}}},
      {"node_hours", r.node_hours},
      {"average_nodes", r.average_nodes},
      {"peak_nodes", r.peak_nodes},
      {"cost", r.cost},
      {"revenue",
       {{"cache_hit", r.revenue_cache_hit},
        {"cache_miss", r.revenue_cache_miss},
        {"output", r.revenue_output},
        {"total", r.revenue}}},
      {"margin", r.margin},
      {"static_peak",
       {{"nodes", r.static_nodes}, {"node_hours", r.static_node_hours}, {"cost", r.static_cost}, {"margin", r.static_margin}}},
      {"autoscaled_node_hours", r.autoscaled_node_hours},
      {"autoscaled_cost", r.autoscaled_cost},
      {"autoscaling_savings", r.savings},
  };
  if (s.node.gpus > 0) j["gpus_per_node"] = s.node.gpus;
  if (r.concurrent_requests) {
    j["output_speed_tokens_per_s"] = *s.load.output_speed_tokens_per_s;
    j["concurrent_requests"] = *r.concurrent_requests;
  }
  return j.dump();
}

}  // namespace cachalot::cost
