#include "cost/capacity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace cachalot::cost {
namespace {

// Max of needed[h .. h + span] (inclusive), wrapping into the next day.
double window_max(const Hourly& needed, int h, int span) {
  double m = 0;
  for (int i = 0; i <= span; ++i) m = std::max(m, needed[(h + i) % kHours]);
  return m;
}

}  // namespace

Hourly nodes_needed(const Hourly& demand_tokens_per_s, double tokens_per_s_per_node, double min_nodes,
                    const Scaling& scaling) {
  CACHALOT_CHECK_ARG(tokens_per_s_per_node > 0, "cost: a node's throughput must be positive, got {}", tokens_per_s_per_node);
  Hourly needed{};
  for (int h = 0; h < kHours; ++h) {
    double n = demand_tokens_per_s[h] * (1.0 + scaling.headroom) / tokens_per_s_per_node;
    // Whole nodes: a shortfall of a billionth of a node is rounding in the inputs, not a node.
    if (scaling.whole_nodes) n = std::ceil(n - 1e-9);
    needed[h] = std::max(n, min_nodes);
  }
  return needed;
}

Hourly provision(const Hourly& needed_nodes, const Scaling& scaling) {
  Hourly nodes{};
  const double peak = *std::max_element(needed_nodes.begin(), needed_nodes.end());
  if (scaling.policy == Policy::kStatic) {
    nodes.fill(peak);
    return nodes;
  }
  // At instant t in hour h the fleet must cover everything needed up to t + lag. With lag =
  // L + f (L whole hours), for the first 1 - f of the hour that reaches into hour h + L, for the
  // last f into hour h + L + 1.
  const int whole = static_cast<int>(std::floor(scaling.scale_up_lag_hours));
  const double frac = scaling.scale_up_lag_hours - whole;
  for (int h = 0; h < kHours; ++h) {
    const double near = window_max(needed_nodes, h, whole);
    const double far = frac > 0 ? window_max(needed_nodes, h, whole + 1) : near;
    // near + frac x (far - near), kept inside [near, far] against rounding.
    nodes[h] = std::clamp(near + frac * (far - near), near, far);
  }
  return nodes;
}

RolePlan plan_role(const Hourly& demand_tokens_per_s, double tokens_per_s_per_node, double min_nodes,
                   const Scaling& scaling) {
  RolePlan p;
  p.demand_tokens_per_s = demand_tokens_per_s;
  p.needed_nodes = nodes_needed(demand_tokens_per_s, tokens_per_s_per_node, min_nodes, scaling);
  // The autoscaled fleet is reported whatever the policy (the savings line), so it is
  // provisioned once and reused when it is also the policy's fleet.
  Scaling autoscale = scaling;
  autoscale.policy = Policy::kAutoscale;
  const Hourly autoscaled = provision(p.needed_nodes, autoscale);
  p.nodes = scaling.policy == Policy::kAutoscale ? autoscaled : provision(p.needed_nodes, scaling);
  p.static_nodes = *std::max_element(p.needed_nodes.begin(), p.needed_nodes.end());
  p.static_node_hours = p.static_nodes * kHours;
  for (double n : autoscaled) p.autoscaled_node_hours += n;
  for (double n : p.nodes) {
    p.node_hours += n;
    p.peak_nodes = std::max(p.peak_nodes, n);
  }
  return p;
}

}  // namespace cachalot::cost
