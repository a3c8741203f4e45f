// The point-to-point messages a schedule implies. A forward of stage s receives stage s-1's
// activation and sends its own to stage s+1; a backward (full or input half) receives stage
// s+1's gradient and sends its own to stage s-1; W moves nothing. The first stage's input and
// the last stage's loss gradient are local. A message between two chunks of one rank (DualPipeV's
// turn at the last rank) is a local hand-off: src == dst.
#pragma once

#include <vector>

#include "dualpipe/schedule.h"

namespace cachalot::dualpipe {

struct Message {
  int src = 0;
  int dst = 0;
  bool gradient = false;  // false: forward activation
  int micro_batch = 0;
  int from_stage = 0;     // the model stage that produced it
  bool operator==(const Message&) const = default;
};

// The messages `op` on `rank` receives and sends, appended in that order.
void op_messages(const Layout& layout, int rank, const Op& op, std::vector<Message>* receives, std::vector<Message>* sends);
// The same for a step (an overlapped step: the forward's, then the backward's).
void step_messages(const Layout& layout, int rank, const Step& step, std::vector<Message>* receives,
                   std::vector<Message>* sends);

}  // namespace cachalot::dualpipe
