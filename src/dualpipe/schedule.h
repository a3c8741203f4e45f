// Pipeline schedules: which compute step each pipeline rank runs, in order, for one training
// step of M micro-batches. Four families:
//
//   1F1B       one model stage per rank; warm-up forwards, then one forward / one backward.
//   ZB1P       1F1B with the backward split into B (input gradient) and W (weight gradient);
//              W fills the bubbles (zero-bubble paper's 1F1B-memory schedule).
//   DualPipe   rank r holds stages r and PP-1-r (two copies of the model); half the
//              micro-batches enter at rank 0, half at rank PP-1; a forward of one direction
//              overlaps a backward of the other (F&B steps). DeepSeek-V3's schedule.
//   DualPipeV  rank r holds stages r and 2R-1-r of a 2R-stage model (a V: down the ranks and
//              back); every micro-batch enters and leaves at rank 0. One copy of the model.
//
// A rank's local model chunks are numbered 0 and 1 (one chunk for 1F1B/ZB1P). Communication is
// not listed: it follows from the steps (a forward of stage s receives from the rank holding
// stage s-1 and sends to the one holding s+1; a backward the other way), see messages.h.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cachalot::dualpipe {

enum class ScheduleKind { k1F1B, kZB1P, kDualPipe, kDualPipeV };

std::string_view schedule_name(ScheduleKind kind);  // "1f1b", "zb1p", "dualpipe", "dualpipev"
// Throws Error(kInvalidArgument) naming the accepted names.
ScheduleKind parse_schedule(std::string_view name);
inline constexpr ScheduleKind kAllSchedules[] = {ScheduleKind::k1F1B, ScheduleKind::kZB1P, ScheduleKind::kDualPipe,
                                                 ScheduleKind::kDualPipeV};

// Where the model stages live and which way each micro-batch travels.
struct Layout {
  ScheduleKind kind = ScheduleKind::k1F1B;
  int ranks = 0;
  int micro_batches = 0;
  int chunks_per_rank = 1;  // 2 for DualPipe and DualPipeV
  int stages = 0;           // model stages a micro-batch passes through

  struct Location {
    int rank = 0;
    int chunk = 0;
    bool operator==(const Location&) const = default;
  };
  // The rank and chunk that run `stage` for `micro_batch`.
  Location where(int micro_batch, int stage) const;
  // The model stage that (rank, chunk) holds.
  int stage_at(int rank, int chunk) const;
  // DualPipe: 0 for micro-batches entering at rank 0, 1 for those entering at rank PP-1.
  int direction(int micro_batch) const;
  // Copies of each model stage's parameters across the ranks (2 for DualPipe).
  int copies() const { return kind == ScheduleKind::kDualPipe ? 2 : 1; }
};

// Throws Error(kInvalidArgument) when the family cannot run that many ranks/micro-batches
// (DualPipe: even PP >= 2, even M >= 2*PP; DualPipeV: M >= 2*ranks; all: ranks, M >= 1).
Layout make_layout(ScheduleKind kind, int ranks, int micro_batches);

enum class OpKind : uint8_t {
  kForward,         // F
  kBackward,        // full backward: input and weight gradients together (B = B_input + W)
  kBackwardInput,   // the input-gradient half; its weight gradient is a later kBackwardWeight
  kBackwardWeight,  // W
};

struct Op {
  OpKind kind = OpKind::kForward;
  int chunk = 0;
  int micro_batch = 0;
  bool operator==(const Op&) const = default;
};

// One compute step: a single op, or an overlapped forward and backward (F&B: `op` is the
// forward, `paired` a backward of the other chunk).
struct Step {
  Op op;
  Op paired;
  bool overlapped = false;
};

struct Schedule {
  Layout layout;
  std::vector<std::vector<Step>> steps;  // [rank] in execution order
};

// The schedule of `kind` for `ranks` pipeline ranks and `micro_batches` micro-batches.
Schedule make_schedule(ScheduleKind kind, int ranks, int micro_batches);

// "F3", "B3", "I3" (input gradient), "W3", "F3&B7"; with the chunk when the rank has two: "F3.1".
std::string op_label(const Op& op, int chunks_per_rank);
std::string step_label(const Step& step, int chunks_per_rank);

}  // namespace cachalot::dualpipe
