// simulation_trace_json: the simulated timeline as Chrome trace events.
#include <nlohmann/json.hpp>

#include "dualpipe/simulator.h"

namespace cachalot::dualpipe {
namespace {

constexpr double kMicrosPerUnit = 1000.0;  // one simulated unit shows as 1 ms
constexpr int kComputeTrack = 0, kActivationTrack = 1, kGradientTrack = 2;

nlohmann::json name_event(const char* what, int pid, int tid, const std::string& name) {
  return {{"ph", "M"}, {"name", what}, {"pid", pid}, {"tid", tid}, {"args", {{"name", name}}}};
}

nlohmann::json op_args(const Layout& l, int rank, const Op& op) {
  return {{"micro_batch", op.micro_batch}, {"chunk", op.chunk}, {"stage", l.stage_at(rank, op.chunk)}};
}

}  // namespace

std::string simulation_trace_json(const Schedule& schedule, const SimulationResult& result) {
  const Layout& l = schedule.layout;
  nlohmann::json events = nlohmann::json::array();
  for (int r = 0; r < l.ranks; ++r) {
    events.push_back(name_event("process_name", r, 0, "pipeline rank " + std::to_string(r)));
    events.push_back(name_event("thread_name", r, kComputeTrack, "compute"));
    events.push_back(name_event("thread_name", r, kActivationTrack, "comm: activations out"));
    events.push_back(name_event("thread_name", r, kGradientTrack, "comm: gradients out"));
    for (size_t k = 0; k < schedule.steps[r].size(); ++k) {
      const Step& step = schedule.steps[r][k];
      const TimedStep& t = result.timeline[r][k];
      nlohmann::json args = step.overlapped
                                ? nlohmann::json{{"forward", op_args(l, r, step.op)}, {"backward", op_args(l, r, step.paired)}}
                                : op_args(l, r, step.op);
      events.push_back({{"ph", "X"}, {"name", step_label(step, l.chunks_per_rank)}, {"cat", "compute"}, {"pid", r},
                        {"tid", kComputeTrack}, {"ts", t.start * kMicrosPerUnit}, {"dur", (t.end - t.start) * kMicrosPerUnit},
                        {"args", std::move(args)}});
    }
  }
  for (const Transfer& t : result.transfers) {
    const Message& m = t.message;
    events.push_back({{"ph", "X"},
                      {"name", (m.gradient ? "grad " : "act ") + std::to_string(m.micro_batch) + " -> " + std::to_string(m.dst)},
                      {"cat", "comm"},
                      {"pid", m.src},
                      {"tid", m.gradient ? kGradientTrack : kActivationTrack},
                      {"ts", t.sent * kMicrosPerUnit},
                      {"dur", (t.arrived - t.sent) * kMicrosPerUnit},
                      {"args", {{"micro_batch", m.micro_batch}, {"from_stage", m.from_stage}, {"to_rank", m.dst}}}});
  }
  return nlohmann::json{{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}}.dump();
}

}  // namespace cachalot::dualpipe
