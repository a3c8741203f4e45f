// Capacity planning: hand-checked needs and fleets, and over random days the two promises of
// the autoscaler: never below the load, never above the static peak.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "cost/capacity.h"

namespace cachalot::cost {
namespace {

Hourly one_busy_hour(int hour, double value) {
  Hourly h{};
  h[hour] = value;
  return h;
}

TEST(Capacity, WholeNodesHeadroomAndMinimum) {
  Scaling s;
  Hourly demand{};
  demand[0] = 1000;   // exactly one node
  demand[1] = 1001;   // one token/s more: two
  demand[2] = 0;      // nothing: the minimum
  demand[3] = 2500;
  const Hourly need = nodes_needed(demand, 1000, 0, s);
  EXPECT_EQ(need[0], 1);
  EXPECT_EQ(need[1], 2);
  EXPECT_EQ(need[2], 0);
  EXPECT_EQ(need[3], 3);

  s.headroom = 0.5;
  const Hourly with_headroom = nodes_needed(demand, 1000, 1, s);
  EXPECT_EQ(with_headroom[0], 2);  // 1500 tokens/s of capacity
  EXPECT_EQ(with_headroom[2], 1);  // the minimum
  EXPECT_EQ(with_headroom[3], 4);  // 3750

  s = Scaling{};
  s.whole_nodes = false;
  EXPECT_DOUBLE_EQ(nodes_needed(demand, 1000, 0, s)[3], 2.5);
  // Rounding noise in the inputs does not buy a node: 0.1 + 0.2 is 0.30000000000000004.
  s.whole_nodes = true;
  EXPECT_EQ(nodes_needed(one_busy_hour(0, 0.1 + 0.2), 0.3, 0, s)[0], 1);
}

TEST(Capacity, StaticRunsThePeakAllDay) {
  Scaling s;
  s.policy = Policy::kStatic;
  const RolePlan p = plan_role(one_busy_hour(7, 4000), 1000, 0, s);
  for (double n : p.nodes) EXPECT_EQ(n, 4);
  EXPECT_EQ(p.static_nodes, 4);
  EXPECT_EQ(p.node_hours, 96);
  EXPECT_EQ(p.static_node_hours, 96);
  EXPECT_EQ(p.autoscaled_node_hours, 4);  // the comparison, whatever the policy
  EXPECT_EQ(p.peak_nodes, 4);
}

TEST(Capacity, ScaleUpLagStartsNodesEarly) {
  Scaling s;
  const Hourly need = one_busy_hour(10, 5);
  Hourly nodes = provision(need, s);
  EXPECT_EQ(nodes, need);  // no lag: exactly the need

  s.scale_up_lag_hours = 1;
  nodes = provision(need, s);
  EXPECT_EQ(nodes[8], 0);
  EXPECT_EQ(nodes[9], 5);   // started an hour before
  EXPECT_EQ(nodes[10], 5);
  EXPECT_EQ(nodes[11], 0);  // scaling down is immediate

  s.scale_up_lag_hours = 1.5;
  nodes = provision(need, s);
  EXPECT_EQ(nodes[7], 0);
  EXPECT_EQ(nodes[8], 2.5);  // the last half of hour 8
  EXPECT_EQ(nodes[9], 5);
  EXPECT_EQ(nodes[10], 5);

  // The day repeats: a peak at 00:00 is prepared for in the evening before.
  s.scale_up_lag_hours = 2;
  nodes = provision(one_busy_hour(0, 3), s);
  EXPECT_EQ(nodes[21], 0);
  EXPECT_EQ(nodes[22], 3);
  EXPECT_EQ(nodes[23], 3);
  EXPECT_EQ(nodes[0], 3);
  EXPECT_EQ(nodes[1], 0);
}

TEST(Capacity, AutoscaledFleetNeverBelowLoadNorAboveStaticPeak) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> unit(0, 1);
  for (int trial = 0; trial < 500; ++trial) {
    Hourly demand{};
    for (double& d : demand) d = unit(rng) < 0.2 ? 0 : unit(rng) * 1e6;
    Scaling s;
    s.whole_nodes = trial % 2 == 0;
    s.headroom = unit(rng) * 0.5;
    s.scale_up_lag_hours = trial % 3 == 0 ? 0 : unit(rng) * 4;
    const double tps = 1000 + unit(rng) * 50000, min_nodes = trial % 5 == 0 ? 3 : 0;
    const RolePlan p = plan_role(demand, tps, min_nodes, s);
    double sum = 0;
    for (int h = 0; h < kHours; ++h) {
      // Capacity covers the hour's demand with its headroom, and the minimum.
      EXPECT_GE(p.nodes[h] * tps, demand[h] * (1 + s.headroom) * (1 - 1e-12)) << "trial " << trial << " hour " << h;
      EXPECT_GE(p.nodes[h], min_nodes);
      EXPECT_LE(p.nodes[h], p.static_nodes) << "trial " << trial << " hour " << h;
      if (s.whole_nodes) {
        EXPECT_EQ(p.needed_nodes[h], std::floor(p.needed_nodes[h]));
      }
      sum += p.nodes[h];
    }
    EXPECT_DOUBLE_EQ(p.node_hours, sum);
    EXPECT_LE(p.node_hours, p.static_node_hours * (1 + 1e-12));
    EXPECT_DOUBLE_EQ(p.static_nodes, *std::max_element(p.needed_nodes.begin(), p.needed_nodes.end()));
  }
}

}  // namespace
}  // namespace cachalot::cost
