// Schedule generators: every family keeps the invariants of validate.h for PP in {2, 4, 8}
// (odd PP too where the family allows it) and several micro-batch counts; broken schedules are
// caught with a message naming what broke.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "dualpipe/schedule.h"
#include "dualpipe/validate.h"

namespace cachalot::dualpipe {
namespace {

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) s += l + "\n";
  return s;
}

int count_kind(const Schedule& s, int rank, OpKind kind) {
  int n = 0;
  for (const Step& step : s.steps[rank]) {
    n += step.op.kind == kind;
    n += step.overlapped && step.paired.kind == kind;
  }
  return n;
}

TEST(Schedules, EveryFamilyKeepsItsInvariants) {
  for (ScheduleKind kind : kAllSchedules) {
    for (int pp : {1, 2, 3, 4, 6, 8}) {
      for (int extra : {0, 1, 2, 5, 12}) {
        int m = 2 * pp + extra;
        if (kind == ScheduleKind::kDualPipe) {
          if (pp % 2 == 1) continue;
          m += m % 2;
        }
        if (kind != ScheduleKind::k1F1B && kind != ScheduleKind::kZB1P && extra == 0 && pp == 1) continue;
        const Schedule s = make_schedule(kind, pp, m);
        EXPECT_EQ(joined(check_schedule(s)), "") << schedule_name(kind) << " pp " << pp << " m " << m;
      }
    }
  }
}

TEST(Schedules, FewerMicroBatchesThanRanksForOneFOneB) {
  for (ScheduleKind kind : {ScheduleKind::k1F1B, ScheduleKind::kZB1P})
    for (int m : {1, 2, 3}) EXPECT_EQ(joined(check_schedule(make_schedule(kind, 4, m))), "") << schedule_name(kind) << " m " << m;
}

TEST(Schedules, OneFOneBOrder) {
  const Schedule s = make_schedule(ScheduleKind::k1F1B, 4, 6);
  std::string rank0, rank3;
  for (const Step& step : s.steps[0]) rank0 += step_label(step, 1) + " ";
  for (const Step& step : s.steps[3]) rank3 += step_label(step, 1) + " ";
  EXPECT_EQ(rank0, "F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5 ");
  EXPECT_EQ(rank3, "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 ");
}

TEST(Schedules, ZeroBubbleSplitsEveryBackward) {
  const Schedule s = make_schedule(ScheduleKind::kZB1P, 4, 8);
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(count_kind(s, r, OpKind::kBackward), 0);
    EXPECT_EQ(count_kind(s, r, OpKind::kBackwardInput), 8);
    EXPECT_EQ(count_kind(s, r, OpKind::kBackwardWeight), 8);
  }
  // The last rank never waits to start a backward: F0 I0 first.
  EXPECT_EQ(step_label(s.steps[3][0], 1) + step_label(s.steps[3][1], 1), "F0I0");
}

TEST(Schedules, DualPipeStepCountsFollowTheEightPhases) {
  // Rank r of PP = 8 ranks, C = 20: h = min(r, 7-r); overlapped steps = 2 x (C/2 - PP + h + 1)
  // + (PP/2 - h - 1), one fewer on the middle ranks (their first pair runs apart).
  const Schedule s = make_schedule(ScheduleKind::kDualPipe, 8, 20);
  for (int r = 0; r < 8; ++r) {
    const int h = std::min(r, 7 - r);
    int overlapped = 0;
    for (const Step& step : s.steps[r]) overlapped += step.overlapped;
    EXPECT_EQ(overlapped, 2 * (10 - 8 + h + 1) + (4 - h - 1) - (h == 3 ? 1 : 0)) << "rank " << r;
    EXPECT_EQ(count_kind(s, r, OpKind::kForward), 20) << "rank " << r;  // 10 per chunk
  }
  // Rank 0 starts with 2 x (PP/2 - 1) = 6 forwards of its own direction, then one of each.
  for (int k = 0; k < 6; ++k) EXPECT_EQ(step_label(s.steps[0][k], 2), fmt::format("F{}.0", k));
  EXPECT_EQ(step_label(s.steps[0][6], 2), "F6.0");
  EXPECT_EQ(step_label(s.steps[0][7], 2), "F10.1");  // the first micro-batch of the other direction
  // The last rank mirrors rank 0 with the directions swapped.
  EXPECT_EQ(step_label(s.steps[7][0], 2), "F10.1");
}

TEST(Schedules, DualPipeVRoutesDownAndBack) {
  const Layout l = make_layout(ScheduleKind::kDualPipeV, 4, 8);
  EXPECT_EQ(l.stages, 8);
  EXPECT_EQ(l.where(3, 0), (Layout::Location{0, 0}));
  EXPECT_EQ(l.where(3, 3), (Layout::Location{3, 0}));
  EXPECT_EQ(l.where(3, 4), (Layout::Location{3, 1}));
  EXPECT_EQ(l.where(3, 7), (Layout::Location{0, 1}));
  EXPECT_EQ(l.stage_at(1, 1), 6);
  const Layout d = make_layout(ScheduleKind::kDualPipe, 4, 8);
  EXPECT_EQ(d.where(1, 0), (Layout::Location{0, 0}));
  EXPECT_EQ(d.where(5, 0), (Layout::Location{3, 1}));  // the second half enters at the last rank
  EXPECT_EQ(d.stage_at(3, 1), 0);
  EXPECT_EQ(d.copies(), 2);
}

TEST(Schedules, RejectsSizesTheFamilyCannotRun) {
  EXPECT_THROW(make_schedule(ScheduleKind::kDualPipe, 3, 12), Error);
  EXPECT_THROW(make_schedule(ScheduleKind::kDualPipe, 4, 6), Error);
  EXPECT_THROW(make_schedule(ScheduleKind::kDualPipe, 4, 9), Error);
  EXPECT_THROW(make_schedule(ScheduleKind::kDualPipeV, 4, 7), Error);
  EXPECT_THROW(make_schedule(ScheduleKind::k1F1B, 0, 4), Error);
  EXPECT_THROW(make_schedule(ScheduleKind::k1F1B, 2, 0), Error);
  EXPECT_THROW(parse_schedule("gpipe"), Error);
  EXPECT_EQ(parse_schedule("dualpipev"), ScheduleKind::kDualPipeV);
}

TEST(Schedules, CheckerCatchesAMissingBackward) {
  Schedule s = make_schedule(ScheduleKind::k1F1B, 2, 4);
  s.steps[1].pop_back();  // B3 on the last rank
  const std::string problems = joined(check_schedule(s));
  EXPECT_NE(problems.find("micro-batch 3 stage 1: backward 0x"), std::string::npos) << problems;
  EXPECT_THROW(validate_schedule(s), Error);
}

TEST(Schedules, CheckerCatchesBackwardBeforeForward) {
  Schedule s = make_schedule(ScheduleKind::k1F1B, 2, 4);
  std::swap(s.steps[1][0], s.steps[1][1]);  // B0 before F0 on the last rank
  const std::string problems = joined(check_schedule(s));
  EXPECT_NE(problems.find("micro-batch 0 stage 1: backward runs before its forward"), std::string::npos) << problems;
}

TEST(Schedules, CheckerCatchesOutOfOrderMessages) {
  Schedule s = make_schedule(ScheduleKind::k1F1B, 2, 4);
  // The last rank takes micro-batch 1 before 0: rank 0 sent 0 first.
  s.steps[1] = {Step{{OpKind::kForward, 0, 1}}, Step{{OpKind::kBackward, 0, 1}}, Step{{OpKind::kForward, 0, 0}},
                Step{{OpKind::kBackward, 0, 0}}, Step{{OpKind::kForward, 0, 2}}, Step{{OpKind::kBackward, 0, 2}},
                Step{{OpKind::kForward, 0, 3}}, Step{{OpKind::kBackward, 0, 3}}};
  const std::string problems = joined(check_schedule(s));
  EXPECT_NE(problems.find("activations from rank 0 to rank 1: message 0 is micro-batch 0"), std::string::npos) << problems;
}

TEST(Schedules, CheckerCatchesADeadlock) {
  Schedule s = make_schedule(ScheduleKind::k1F1B, 2, 2);
  // Rank 0 waits for B0's gradient before sending F1; rank 1 runs F1 before B0: both wait.
  s.steps[0] = {Step{{OpKind::kForward, 0, 0}}, Step{{OpKind::kBackward, 0, 0}}, Step{{OpKind::kForward, 0, 1}},
                Step{{OpKind::kBackward, 0, 1}}};
  s.steps[1] = {Step{{OpKind::kForward, 0, 0}}, Step{{OpKind::kForward, 0, 1}}, Step{{OpKind::kBackward, 0, 0}},
                Step{{OpKind::kBackward, 0, 1}}};
  const std::string problems = joined(check_schedule(s));
  EXPECT_NE(problems.find("deadlocks"), std::string::npos) << problems;
  EXPECT_NE(problems.find("rank 0 step 1 (B0) waits for the gradient of micro-batch 0"), std::string::npos) << problems;
}

TEST(Schedules, CheckerCatchesAWrongRank) {
  Schedule s = make_schedule(ScheduleKind::kDualPipe, 2, 4);
  for (Step& step : s.steps[0])
    if (step.op.kind == OpKind::kForward && step.op.micro_batch == 0) step.op.chunk = 1;  // direction 0 on chunk 1
  const std::string problems = joined(check_schedule(s));
  EXPECT_NE(problems.find("micro-batch 0 does not pass stage 1 on this rank and chunk"), std::string::npos) << problems;
}

}  // namespace
}  // namespace cachalot::dualpipe
