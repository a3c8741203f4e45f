// The simulator against the published bubbles and activation peaks, with zero communication:
// 1F1B and ZB1P at any F, B, W; DualPipe and DualPipeV at F = B - W = W (the papers' assumption)
// with any overlap gain. Also communication delays, traces and bad costs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "dualpipe/simulator.h"

namespace cachalot::dualpipe {
namespace {

constexpr double kTolerance = 1e-9;

TEST(Simulator, OneFOneBAndZeroBubbleMatchTheirFormulas) {
  const Costs costs[] = {{1, 2, 1}, {1, 2.2, 0.7}, {1.5, 2, 0.5}, {1, 3, 1}, {2, 2, 0}};
  for (ScheduleKind kind : {ScheduleKind::k1F1B, ScheduleKind::kZB1P}) {
    for (int pp : {2, 4, 8}) {
      for (int m : {2 * pp, 2 * pp + 3, 20}) {
        const Schedule s = make_schedule(kind, pp, m);
        for (const Costs& c : costs) {
          const SimulationResult r = simulate(s, c);
          for (int rank = 0; rank < pp; ++rank)
            EXPECT_NEAR(r.bubble[rank], bubble_formula(s.layout, c), kTolerance)
                << schedule_name(kind) << " pp " << pp << " m " << m << " F " << c.forward << " B " << c.backward << " W "
                << c.weight << " rank " << rank;
          EXPECT_EQ(r.max_peak_activations(), activation_formula(s.layout));
          EXPECT_EQ(r.peak_activations[0], pp);
        }
      }
    }
  }
}

TEST(Simulator, DualPipeFamiliesMatchTheirFormulas) {
  for (ScheduleKind kind : {ScheduleKind::kDualPipe, ScheduleKind::kDualPipeV}) {
    for (int pp : {2, 4, 6, 8}) {
      for (int m : {2 * pp, 2 * pp + 4, 40}) {
        const Schedule s = make_schedule(kind, pp, m);
        for (double unit : {1.0, 2.5}) {
          for (double overlap : {2.0, 2.5, 3.0}) {  // F&B from max(F, B) to F + B
            const Costs c{unit, 2 * unit, unit, overlap * unit};
            const SimulationResult r = simulate(s, c);
            EXPECT_NEAR(r.max_bubble(), bubble_formula(s.layout, c), kTolerance)
                << schedule_name(kind) << " pp " << pp << " m " << m << " F&B " << c.overlapped;
            EXPECT_EQ(r.max_peak_activations(), activation_formula(s.layout));
          }
        }
      }
    }
  }
}

TEST(Simulator, DualPipeBeatsZeroBubbleAtTheIssueShape) {
  // PP = 8, 20 micro-batches, F&B overlapping a quarter of the pair.
  const Costs c{1, 2, 1, 2.25};
  const SimulationResult one_f = simulate(make_schedule(ScheduleKind::k1F1B, 8, 20), c);
  const SimulationResult zb = simulate(make_schedule(ScheduleKind::kZB1P, 8, 20), c);
  const SimulationResult dual = simulate(make_schedule(ScheduleKind::kDualPipe, 8, 20), c);
  EXPECT_NEAR(one_f.max_bubble(), 21, kTolerance);
  EXPECT_NEAR(zb.max_bubble(), 7, kTolerance);
  EXPECT_NEAR(dual.max_bubble(), 3.75, kTolerance);
  EXPECT_LT(dual.makespan, zb.makespan);
}

TEST(Simulator, CommunicationDelaysTheCriticalPath) {
  // One micro-batch: its forward crosses 3 hops down and its gradient 3 hops back.
  const Schedule one = make_schedule(ScheduleKind::k1F1B, 4, 1);
  EXPECT_NEAR(simulate(one, Costs{1, 2, 1, -1, 0.5}).makespan, 4 * (1 + 2) + 6 * 0.5, kTolerance);
  // In 1F1B's steady state each forward waits for the one upstream: communication is exposed
  // on every cycle, so the makespan grows by more than the 6 hops.
  const Schedule s = make_schedule(ScheduleKind::k1F1B, 4, 8);
  const SimulationResult free = simulate(s, Costs{1, 2, 1, -1, 0});
  const SimulationResult slow = simulate(s, Costs{1, 2, 1, -1, 0.5});
  EXPECT_GT(slow.makespan - free.makespan, 6 * 0.5);
  EXPECT_EQ(slow.transfers.size(), 2u * 3 * 8);
  for (const Transfer& t : slow.transfers) EXPECT_NEAR(t.arrived - t.sent, 0.5, kTolerance);
}

TEST(Simulator, TraceHasOneProcessPerRankWithComputeAndCommTracks) {
  const Schedule s = make_schedule(ScheduleKind::kDualPipe, 4, 8);
  const SimulationResult r = simulate(s, Costs{1, 2, 1, 2.5, 0.1});
  const nlohmann::json trace = nlohmann::json::parse(simulation_trace_json(s, r));
  size_t compute = 0, comm = 0, overlapped = 0;
  std::set<int> pids;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] != "X") continue;
    pids.insert(e["pid"].get<int>());
    if (e["cat"] == "compute") {
      ++compute;
      overlapped += e["name"].get<std::string>().find('&') != std::string::npos;
    } else {
      ++comm;
    }
  }
  size_t steps = 0;
  for (const auto& rank : s.steps) steps += rank.size();
  EXPECT_EQ(compute, steps);
  EXPECT_EQ(comm, r.transfers.size());
  EXPECT_GT(overlapped, 0u);
  EXPECT_EQ(pids.size(), 4u);
}

TEST(Simulator, RejectsImpossibleCosts) {
  const Schedule s = make_schedule(ScheduleKind::k1F1B, 2, 2);
  EXPECT_THROW(simulate(s, Costs{0, 2, 1}), Error);
  EXPECT_THROW(simulate(s, Costs{1, 2, 3}), Error);       // W longer than the full backward
  EXPECT_THROW(simulate(s, Costs{1, 2, 1, 1.5}), Error);  // F&B shorter than B
  EXPECT_THROW(simulate(s, Costs{1, 2, 1, -1, -1}), Error);
}

}  // namespace
}  // namespace cachalot::dualpipe
