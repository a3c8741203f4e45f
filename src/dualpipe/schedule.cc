#include "dualpipe/schedule.h"

#include <fmt/format.h>

#include "core/error.h"

namespace cachalot::dualpipe {

std::string_view schedule_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::k1F1B: return "1f1b";
    case ScheduleKind::kZB1P: return "zb1p";
    case ScheduleKind::kDualPipe: return "dualpipe";
    case ScheduleKind::kDualPipeV: return "dualpipev";
  }
  return "?";
}

ScheduleKind parse_schedule(std::string_view name) {
  for (ScheduleKind kind : kAllSchedules)
    if (schedule_name(kind) == name) return kind;
  raise(ErrorKind::kInvalidArgument, "dualpipe: unknown schedule '{}' (use 1f1b, zb1p, dualpipe or dualpipev)", name);
}

Layout make_layout(ScheduleKind kind, int ranks, int micro_batches) {
  CACHALOT_CHECK_ARG(ranks >= 1, "dualpipe: need at least one pipeline rank, got {}", ranks);
  CACHALOT_CHECK_ARG(micro_batches >= 1, "dualpipe: need at least one micro-batch, got {}", micro_batches);
  Layout l;
  l.kind = kind;
  l.ranks = ranks;
  l.micro_batches = micro_batches;
  switch (kind) {
    case ScheduleKind::k1F1B:
    case ScheduleKind::kZB1P:
      l.stages = ranks;
      break;
    case ScheduleKind::kDualPipe:
      CACHALOT_CHECK_ARG(ranks >= 2 && ranks % 2 == 0, "dualpipe: DualPipe needs an even number of ranks, got {}", ranks);
      CACHALOT_CHECK_ARG(micro_batches % 2 == 0 && micro_batches >= 2 * ranks,
                         "dualpipe: DualPipe needs an even number of micro-batches >= 2 x ranks ({}), got {}", 2 * ranks,
                         micro_batches);
      l.chunks_per_rank = 2;
      l.stages = ranks;
      break;
    case ScheduleKind::kDualPipeV:
      CACHALOT_CHECK_ARG(micro_batches >= 2 * ranks, "dualpipe: DualPipeV needs micro-batches >= 2 x ranks ({}), got {}",
                         2 * ranks, micro_batches);
      l.chunks_per_rank = 2;
      l.stages = 2 * ranks;
      break;
  }
  return l;
}

int Layout::direction(int micro_batch) const {
  return kind == ScheduleKind::kDualPipe && micro_batch >= micro_batches / 2 ? 1 : 0;
}

Layout::Location Layout::where(int micro_batch, int stage) const {
  switch (kind) {
    case ScheduleKind::k1F1B:
    case ScheduleKind::kZB1P:
      return {stage, 0};
    case ScheduleKind::kDualPipe:
      // Chunk 0 of every rank carries direction 0 (stage r on rank r), chunk 1 direction 1
      // (stage s on rank PP-1-s).
      return direction(micro_batch) == 0 ? Location{stage, 0} : Location{ranks - 1 - stage, 1};
    case ScheduleKind::kDualPipeV:
      return stage < ranks ? Location{stage, 0} : Location{2 * ranks - 1 - stage, 1};
  }
  return {};
}

int Layout::stage_at(int rank, int chunk) const {
  if (chunk == 0) return rank;
  return kind == ScheduleKind::kDualPipe ? ranks - 1 - rank : 2 * ranks - 1 - rank;
}

std::string op_label(const Op& op, int chunks_per_rank) {
  const char* letter = "F";
  switch (op.kind) {
    case OpKind::kForward: letter = "F"; break;
    case OpKind::kBackward: letter = "B"; break;
    case OpKind::kBackwardInput: letter = "I"; break;
    case OpKind::kBackwardWeight: letter = "W"; break;
  }
  if (chunks_per_rank > 1) return fmt::format("{}{}.{}", letter, op.micro_batch, op.chunk);
  return fmt::format("{}{}", letter, op.micro_batch);
}

std::string step_label(const Step& step, int chunks_per_rank) {
  if (!step.overlapped) return op_label(step.op, chunks_per_rank);
  return op_label(step.op, chunks_per_rank) + "&" + op_label(step.paired, chunks_per_rank);
}

}  // namespace cachalot::dualpipe
