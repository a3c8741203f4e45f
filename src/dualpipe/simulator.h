// Discrete-event simulation of a schedule: every rank runs its steps in order, a step starts
// when the rank is free and every message it receives has arrived, and a message leaves when
// the step that produced it ends and arrives `comm` later (a hand-off inside a rank costs
// nothing). Communication runs beside compute, as DualPipe's does, so only waiting shows up
// as bubble.
#pragma once

#include <string>
#include <vector>

#include "dualpipe/messages.h"
#include "dualpipe/schedule.h"

namespace cachalot::dualpipe {

// Times of one model chunk. `backward` is the full backward (input and weight gradients);
// an input-only backward takes backward - weight. `overlapped` is an F&B step with a full
// backward (default forward + backward: no overlap gain); with an input-only backward it takes
// overlapped - weight.
struct Costs {
  double forward = 1.0;
  double backward = 2.0;
  double weight = 1.0;
  double overlapped = -1.0;  // < 0: forward + backward
  double comm = 0.0;         // per hop
  double overlapped_or_default() const { return overlapped < 0 ? forward + backward : overlapped; }
};
// Throws Error(kInvalidArgument) unless 0 <= weight <= backward, forward > 0, comm >= 0 and
// max(forward, backward) <= overlapped.
void check_costs(const Costs& costs);

struct TimedStep {
  double start = 0;
  double end = 0;
};

struct Transfer {
  Message message;
  double sent = 0;
  double arrived = 0;
};

struct SimulationResult {
  double makespan = 0;
  std::vector<double> busy;                 // [rank] compute time
  std::vector<double> bubble;               // [rank] makespan - busy
  std::vector<int> peak_activations;        // [rank] most chunks between their F and their B
  std::vector<std::vector<TimedStep>> timeline;  // [rank][step]
  std::vector<Transfer> transfers;          // between ranks, in send order
  double max_bubble() const;
  int max_peak_activations() const;
};

// Throws Error(kInvalidArgument) when the schedule deadlocks (a rank waits for a message no
// step will send before it), naming each stuck rank's next step and the message it waits for.
SimulationResult simulate(const Schedule& schedule, const Costs& costs);

// The published bubble of the family: 1F1B (PP-1)(F+B), ZB1P (PP-1)(F+B-2W), DualPipe
// (PP/2-1)(F&B+B-3W), DualPipeV (R-1)(F&B+B-3W) for R ranks (its 2R stages are DualPipe's PP).
// DualPipe's figure is its middle ranks' bubble when F = B - W = W (the papers' assumption);
// other costs move it (simulate to see by how much).
double bubble_formula(const Layout& layout, const Costs& costs);
// Peak in-flight activations of the family, in chunks: PP for 1F1B and ZB1P, PP+1 for
// DualPipe, 2R+1 (its stages + 1) for DualPipeV.
int activation_formula(const Layout& layout);

// A Chrome/Perfetto trace of the simulation: one process per rank with a "compute" track (each
// step named F3, I3, W3, B3 or F3&B7, with its micro-batch, chunk and stage) and a "comm" track
// (each transfer from send to arrival). One simulated time unit is shown as one millisecond.
std::string simulation_trace_json(const Schedule& schedule, const SimulationResult& result);

}  // namespace cachalot::dualpipe
