// How many nodes one role (prefill or decode) needs each hour, and how many it runs under the
// scaling policy. Hourly figures are averages over the hour; the day is taken to repeat, so a
// scale-up lag at 23:00 looks ahead into the next day's 00:00.
#pragma once

#include "cost/scenario.h"

namespace cachalot::cost {

struct RolePlan {
  Hourly demand_tokens_per_s{};  // what the role must process
  Hourly needed_nodes{};         // to carry that hour: demand x (1 + headroom) / per-node rate,
                                 // whole if asked, at least the role's minimum
  Hourly nodes{};                // in service (and paid) under the policy, averaged over the hour
  double static_nodes = 0;       // a fleet sized once for the day: the peak of needed_nodes
  double node_hours = 0;         // sum of nodes
  double static_node_hours = 0;  // static_nodes x 24
  double autoscaled_node_hours = 0;  // what autoscaling would run, whatever the policy
  double peak_nodes = 0;         // max of nodes
};

// needed_nodes for a role whose nodes each sustain `tokens_per_s_per_node` (> 0).
Hourly nodes_needed(const Hourly& demand_tokens_per_s, double tokens_per_s_per_node, double min_nodes,
                    const Scaling& scaling);

// The fleet the policy runs. Static: the peak all day. Autoscale: each hour what the load needs,
// started scale_up_lag_hours early (a node needed from hour t is paid from t - lag; scaling down
// is immediate), so capacity never falls below need and never exceeds the static peak.
Hourly provision(const Hourly& needed_nodes, const Scaling& scaling);

RolePlan plan_role(const Hourly& demand_tokens_per_s, double tokens_per_s_per_node, double min_nodes,
                   const Scaling& scaling);

}  // namespace cachalot::cost
