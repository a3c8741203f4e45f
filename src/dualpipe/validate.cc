#include "dualpipe/validate.h"

#include <fmt/format.h>

#include <map>
#include <tuple>

#include "core/error.h"
#include "dualpipe/messages.h"
#include "dualpipe/simulator.h"

namespace cachalot::dualpipe {
namespace {

// Where in its rank's order each op of one (micro-batch, stage) ran; -1 = not seen.
struct StageOps {
  int forward = -1, backward = -1, input = -1, weight = -1;
  int count[4] = {0, 0, 0, 0};
};

void check_op(const Layout& l, int rank, int position, const Op& op, std::vector<StageOps>& ops,
              std::vector<std::string>& problems) {
  const std::string where = fmt::format("rank {} op {} ({})", rank, position, op_label(op, l.chunks_per_rank));
  if (op.chunk < 0 || op.chunk >= l.chunks_per_rank || op.micro_batch < 0 || op.micro_batch >= l.micro_batches) {
    problems.push_back(where + ": no such chunk or micro-batch");
    return;
  }
  const int stage = l.stage_at(rank, op.chunk);
  if (!(l.where(op.micro_batch, stage) == Layout::Location{rank, op.chunk})) {
    problems.push_back(fmt::format("{}: micro-batch {} does not pass stage {} on this rank and chunk", where, op.micro_batch, stage));
    return;
  }
  StageOps& s = ops[static_cast<size_t>(op.micro_batch) * l.stages + stage];
  s.count[static_cast<int>(op.kind)]++;
  switch (op.kind) {
    case OpKind::kForward: s.forward = position; break;
    case OpKind::kBackward: s.backward = position; break;
    case OpKind::kBackwardInput: s.input = position; break;
    case OpKind::kBackwardWeight: s.weight = position; break;
  }
}

void check_coverage(const Layout& l, const std::vector<StageOps>& ops, std::vector<std::string>& problems) {
  for (int mb = 0; mb < l.micro_batches; ++mb) {
    for (int stage = 0; stage < l.stages; ++stage) {
      const StageOps& s = ops[static_cast<size_t>(mb) * l.stages + stage];
      const auto name = [&] { return fmt::format("micro-batch {} stage {}", mb, stage); };
      const int f = s.count[0], b = s.count[1], i = s.count[2], w = s.count[3];
      if (f != 1) problems.push_back(fmt::format("{}: forwarded {} times", name(), f));
      const bool full = b == 1 && i == 0 && w == 0, split = b == 0 && i == 1 && w == 1;
      if (!full && !split) {
        problems.push_back(fmt::format("{}: backward {}x, input half {}x, weight half {}x (want one full backward or one of each half)",
                                       name(), b, i, w));
        continue;
      }
      const int back = full ? s.backward : s.input;
      if (f == 1 && back <= s.forward) problems.push_back(name() + ": backward runs before its forward");
      if (split && s.weight <= s.input) problems.push_back(name() + ": weight half runs before its input half");
    }
  }
}

// For each (sender, receiver, kind): the messages in send order must be those in receive order.
void check_message_order(const Schedule& schedule, std::vector<std::string>& problems) {
  const Layout& l = schedule.layout;
  using Channel = std::tuple<int, int, bool>;
  std::map<Channel, std::vector<Message>> sent, received;
  std::vector<Message> receives, sends;
  for (int r = 0; r < l.ranks; ++r) {
    for (const Step& step : schedule.steps[r]) {
      receives.clear();
      sends.clear();
      step_messages(l, r, step, &receives, &sends);
      for (const Message& m : sends) sent[{m.src, m.dst, m.gradient}].push_back(m);
      for (const Message& m : receives) received[{m.src, m.dst, m.gradient}].push_back(m);
    }
  }
  for (auto& [channel, list] : received) sent.try_emplace(channel);
  for (const auto& [channel, out] : sent) {
    const std::vector<Message>& in = received[channel];
    const auto& [src, dst, gradient] = channel;
    const char* kind = gradient ? "gradients" : "activations";
    if (out.size() != in.size()) {
      problems.push_back(fmt::format("{} from rank {} to rank {}: {} sent, {} received", kind, src, dst, out.size(), in.size()));
      continue;
    }
    for (size_t k = 0; k < out.size(); ++k) {
      if (out[k] == in[k]) continue;
      problems.push_back(fmt::format("{} from rank {} to rank {}: message {} is micro-batch {} stage {} when sent but micro-batch "
                                     "{} stage {} when received",
                                     kind, src, dst, k, out[k].micro_batch, out[k].from_stage, in[k].micro_batch, in[k].from_stage));
      break;
    }
  }
}

}  // namespace

std::vector<std::string> check_schedule(const Schedule& schedule) {
  const Layout& l = schedule.layout;
  std::vector<std::string> problems;
  if (static_cast<int>(schedule.steps.size()) != l.ranks) {
    problems.push_back(fmt::format("{} ranks have steps, the layout has {}", schedule.steps.size(), l.ranks));
    return problems;
  }
  std::vector<StageOps> ops(static_cast<size_t>(l.micro_batches) * l.stages);
  for (int r = 0; r < l.ranks; ++r) {
    int position = 0;
    for (const Step& step : schedule.steps[r]) {
      if (step.overlapped && (step.op.kind != OpKind::kForward ||
                              (step.paired.kind != OpKind::kBackward && step.paired.kind != OpKind::kBackwardInput)))
        problems.push_back(fmt::format("rank {} step {}: an overlapped step must pair a forward with a backward", r, position));
      // The two ops of a step get consecutive positions: the forward first.
      check_op(l, r, position++, step.op, ops, problems);
      if (step.overlapped) check_op(l, r, position++, step.paired, ops, problems);
    }
  }
  check_coverage(l, ops, problems);
  if (!problems.empty()) return problems;  // message order and deadlock only mean something on sound ops
  check_message_order(schedule, problems);
  try {
    simulate(schedule, Costs{});
  } catch (const Error& e) {
    problems.push_back(e.what());
  }
  return problems;
}

void validate_schedule(const Schedule& schedule) {
  const std::vector<std::string> problems = check_schedule(schedule);
  if (problems.empty()) return;
  std::string text;
  for (const std::string& p : problems) text += "\n  " + p;
  raise(ErrorKind::kInvalidArgument, "dualpipe: the {} schedule on {} ranks x {} micro-batches is broken:{}",
        schedule_name(schedule.layout.kind), schedule.layout.ranks, schedule.layout.micro_batches, text);
}

}  // namespace cachalot::dualpipe
