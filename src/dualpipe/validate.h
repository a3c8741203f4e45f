// Invariants every schedule must keep, checked before it is simulated or executed:
//   - each op names a chunk and micro-batch that exist, on the rank that holds that stage of
//     that micro-batch's route;
//   - each (micro-batch, stage) is forwarded once and backpropagated once: one full backward,
//     or one input half followed by one weight half; an overlapped step is a forward with a
//     backward (full or input half);
//   - on each rank a chunk's forward comes before its backward, its input half before its W;
//   - send/recv pairs match in order: for each (sender, receiver, kind), the messages in the
//     sender's step order are the messages in the receiver's step order;
//   - no deadlock: every rank can run all its steps (simulated at unit times).
#pragma once

#include <string>
#include <vector>

#include "dualpipe/schedule.h"

namespace cachalot::dualpipe {

// Every broken invariant, one line each; empty when the schedule is sound.
std::vector<std::string> check_schedule(const Schedule& schedule);
// Throws Error(kInvalidArgument) listing them.
void validate_schedule(const Schedule& schedule);

}  // namespace cachalot::dualpipe
