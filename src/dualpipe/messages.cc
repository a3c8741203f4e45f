#include "dualpipe/messages.h"

namespace cachalot::dualpipe {

void op_messages(const Layout& layout, int rank, const Op& op, std::vector<Message>* receives, std::vector<Message>* sends) {
  const int s = layout.stage_at(rank, op.chunk);
  const int mb = op.micro_batch;
  switch (op.kind) {
    case OpKind::kForward:
      if (s > 0) receives->push_back(Message{layout.where(mb, s - 1).rank, rank, false, mb, s - 1});
      if (s < layout.stages - 1) sends->push_back(Message{rank, layout.where(mb, s + 1).rank, false, mb, s});
      break;
    case OpKind::kBackward:
    case OpKind::kBackwardInput:
      if (s < layout.stages - 1) receives->push_back(Message{layout.where(mb, s + 1).rank, rank, true, mb, s + 1});
      if (s > 0) sends->push_back(Message{rank, layout.where(mb, s - 1).rank, true, mb, s});
      break;
    case OpKind::kBackwardWeight:
      break;
  }
}

void step_messages(const Layout& layout, int rank, const Step& step, std::vector<Message>* receives,
                   std::vector<Message>* sends) {
  op_messages(layout, rank, step.op, receives, sends);
  if (step.overlapped) op_messages(layout, rank, step.paired, receives, sends);
}

}  // namespace cachalot::dualpipe
