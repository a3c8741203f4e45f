#include "dualpipe/simulator.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace cachalot::dualpipe {
namespace {

constexpr double kNotYet = std::numeric_limits<double>::infinity();

// Arrival times of every message, indexed by (gradient, micro-batch, producing stage).
class Arrivals {
 public:
  explicit Arrivals(const Layout& l)
      : micro_batches_(l.micro_batches), stages_(l.stages), times_(2 * static_cast<size_t>(micro_batches_) * stages_, kNotYet) {}
  double& at(const Message& m) {
    return times_[(static_cast<size_t>(m.gradient) * micro_batches_ + m.micro_batch) * stages_ + m.from_stage];
  }

 private:
  int micro_batches_, stages_;
  std::vector<double> times_;
};

double op_time(const Costs& c, OpKind kind) {
  switch (kind) {
    case OpKind::kForward: return c.forward;
    case OpKind::kBackward: return c.backward;
    case OpKind::kBackwardInput: return c.backward - c.weight;
    case OpKind::kBackwardWeight: return c.weight;
  }
  return 0;
}

double step_time(const Costs& c, const Step& s) {
  if (!s.overlapped) return op_time(c, s.op.kind);
  return c.overlapped_or_default() - (s.paired.kind == OpKind::kBackwardInput ? c.weight : 0.0);
}

int activation_delta(const Op& op) {
  if (op.kind == OpKind::kForward) return 1;
  if (op.kind == OpKind::kBackward || op.kind == OpKind::kBackwardInput) return -1;
  return 0;
}

}  // namespace

void check_costs(const Costs& c) {
  CACHALOT_CHECK_ARG(c.forward > 0 && std::isfinite(c.forward), "dualpipe: forward time must be positive, got {}", c.forward);
  CACHALOT_CHECK_ARG(c.weight >= 0 && c.weight <= c.backward && std::isfinite(c.backward),
                     "dualpipe: need 0 <= weight ({}) <= backward ({}): W is part of the full backward", c.weight, c.backward);
  CACHALOT_CHECK_ARG(c.comm >= 0 && std::isfinite(c.comm), "dualpipe: communication time must be >= 0, got {}", c.comm);
  const double fb = c.overlapped_or_default();
  CACHALOT_CHECK_ARG(fb >= std::max(c.forward, c.backward) && std::isfinite(fb),
                     "dualpipe: an overlapped F&B ({}) cannot be shorter than its forward ({}) or backward ({})", fb,
                     c.forward, c.backward);
}

double SimulationResult::max_bubble() const { return bubble.empty() ? 0 : *std::max_element(bubble.begin(), bubble.end()); }
int SimulationResult::max_peak_activations() const {
  return peak_activations.empty() ? 0 : *std::max_element(peak_activations.begin(), peak_activations.end());
}

SimulationResult simulate(const Schedule& schedule, const Costs& costs) {
  check_costs(costs);
  const Layout& l = schedule.layout;
  const int ranks = l.ranks;
  SimulationResult out;
  out.busy.assign(ranks, 0);
  out.peak_activations.assign(ranks, 0);
  out.timeline.resize(ranks);
  Arrivals arrivals(l);
  std::vector<size_t> next(ranks, 0);
  std::vector<double> clock(ranks, 0);
  std::vector<int> live(ranks, 0);
  std::vector<Message> receives, sends;
  // Sweep the ranks, advancing each as far as its received messages allow; a step's start
  // time depends only on messages already produced, so the sweep order does not matter.
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < ranks; ++r) {
      while (next[r] < schedule.steps[r].size()) {
        const Step& step = schedule.steps[r][next[r]];
        receives.clear();
        sends.clear();
        step_messages(l, r, step, &receives, &sends);
        double start = clock[r];
        for (const Message& m : receives) start = std::max(start, arrivals.at(m));
        if (start == kNotYet) break;
        const double end = start + step_time(costs, step);
        for (const Message& m : sends) {
          const bool hop = m.src != m.dst;
          const double arrive = end + (hop ? costs.comm : 0.0);
          arrivals.at(m) = arrive;
          if (hop) out.transfers.push_back(Transfer{m, end, arrive});
        }
        // (The last stage's backward needs only its own forward's loss: step order covers it.)
        for (const Op* op : {&step.op, step.overlapped ? &step.paired : nullptr}) {
          if (op == nullptr) continue;
          live[r] += activation_delta(*op);
          out.peak_activations[r] = std::max(out.peak_activations[r], live[r]);
        }
        out.timeline[r].push_back(TimedStep{start, end});
        out.busy[r] += end - start;
        clock[r] = end;
        ++next[r];
        progress = true;
      }
    }
  }
  std::string stuck;
  for (int r = 0; r < ranks; ++r) {
    if (next[r] == schedule.steps[r].size()) continue;
    const Step& step = schedule.steps[r][next[r]];
    receives.clear();
    sends.clear();
    step_messages(l, r, step, &receives, &sends);
    for (const Message& m : receives)
      if (arrivals.at(m) == kNotYet)
        stuck += fmt::format("; rank {} step {} ({}) waits for the {} of micro-batch {} from stage {} on rank {}", r, next[r],
                             step_label(step, l.chunks_per_rank), m.gradient ? "gradient" : "activation", m.micro_batch,
                             m.from_stage, m.src);
  }
  if (!stuck.empty()) raise(ErrorKind::kInvalidArgument, "dualpipe: the {} schedule deadlocks{}", schedule_name(l.kind), stuck);
  out.makespan = *std::max_element(clock.begin(), clock.end());
  out.bubble.resize(ranks);
  for (int r = 0; r < ranks; ++r) out.bubble[r] = out.makespan - out.busy[r];
  return out;
}

double bubble_formula(const Layout& l, const Costs& c) {
  const double F = c.forward, B = c.backward, W = c.weight, FB = c.overlapped_or_default();
  switch (l.kind) {
    case ScheduleKind::k1F1B: return (l.ranks - 1) * (F + B);
    case ScheduleKind::kZB1P: return (l.ranks - 1) * (F + B - 2 * W);
    case ScheduleKind::kDualPipe: return (l.ranks / 2 - 1) * (FB + B - 3 * W);
    case ScheduleKind::kDualPipeV: return (l.ranks - 1) * (FB + B - 3 * W);
  }
  return 0;
}

int activation_formula(const Layout& l) {
  switch (l.kind) {
    case ScheduleKind::k1F1B:
    case ScheduleKind::kZB1P: return l.ranks;
    case ScheduleKind::kDualPipe:
    case ScheduleKind::kDualPipeV: return l.stages + 1;
  }
  return 0;
}

}  // namespace cachalot::dualpipe
