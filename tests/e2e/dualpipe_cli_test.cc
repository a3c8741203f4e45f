// `cachalot dualpipe simulate|train` end to end: the comparison table as JSON with traces,
// training with --check on threads, and clear errors for sizes a schedule cannot run.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <map>
#include <set>
#include <sstream>

#include "core/file_io.h"
#include "tests/support/test_support.h"

namespace cachalot {
namespace {

using nlohmann::json;
using testing::run_cachalot;

TEST(DualPipeCli, SimulateComparesEverySchedule) {
  testing::TempDir dir;
  const auto r = run_cachalot({"dualpipe", "simulate", "--pp", "8", "--micro", "20", "--schedule", "all", "--trace-dir",
                               dir.file("traces"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::map<std::string, json> rows;
  for (std::string line; std::getline(lines, line);) {
    const json row = json::parse(line);
    rows[row["schedule"]] = row;
    // F = B - W = W by default: the simulated bubble is the formula.
    EXPECT_DOUBLE_EQ(row["bubble"].get<double>(), row["bubble_formula"].get<double>()) << line;
    EXPECT_EQ(row["peak_activations"], row["activations_formula"]) << line;
    const json trace = json::parse(read_text_file(row["trace"].get<std::string>()));
    EXPECT_GT(trace["traceEvents"].size(), 100u);
  }
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_DOUBLE_EQ(rows["1f1b"]["bubble"].get<double>(), 21);
  EXPECT_DOUBLE_EQ(rows["zb1p"]["bubble"].get<double>(), 7);
  EXPECT_DOUBLE_EQ(rows["dualpipe"]["bubble"].get<double>(), 6);
  EXPECT_EQ(rows["dualpipe"]["model_copies"], 2);

  const auto table = run_cachalot({"dualpipe", "simulate", "--pp", "4", "--micro", "8", "--overlapped", "2.5"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("dualpipev"), std::string::npos) << table.out;
}

TEST(DualPipeCli, TrainLowersTheLossAndMatchesSequential) {
  testing::TempDir dir;
  const auto r = run_cachalot({"--trace", dir.file("train.json"), "dualpipe", "train", "--pp", "4", "--schedule", "dualpipe",
                               "--steps", "4", "--hidden", "32", "--ffn", "48", "--check", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::vector<double> losses;
  for (std::string line; std::getline(lines, line);) {
    const json step = json::parse(line);
    losses.push_back(step["loss"]);
    EXPECT_LT(step["gradient_difference"].get<double>(), 1e-5) << line;
  }
  ASSERT_EQ(losses.size(), 4u);
  EXPECT_LT(losses.back(), losses.front());
  // One track per rank with its compute spans.
  const json trace = json::parse(read_text_file(dir.file("train.json")));
  std::set<int> pids;
  for (const auto& e : trace["traceEvents"])
    if (e["ph"] == "X" && e["cat"] == "compute") pids.insert(e["pid"].get<int>());
  EXPECT_EQ(pids.size(), 4u);
}

TEST(DualPipeCli, ScheduleListsEachRanksStepsWithPeers) {
  const auto r = run_cachalot({"dualpipe", "schedule", "--pp", "2", "--micro", "4", "--schedule", "1f1b", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string first;
  std::getline(lines, first);
  const json rank0 = json::parse(first);
  EXPECT_EQ(rank0["rank"], 0);
  ASSERT_EQ(rank0["steps"].size(), 8u);
  EXPECT_EQ(rank0["steps"][0]["step"], "F0");
  EXPECT_EQ(rank0["steps"][0]["send"][0]["peer"], 1);
  EXPECT_EQ(rank0["steps"][0]["recv"].size(), 0u);
  EXPECT_EQ(rank0["steps"][2]["step"], "B0");
  EXPECT_EQ(rank0["steps"][2]["recv"][0]["peer"], 1);
  EXPECT_TRUE(rank0["steps"][2]["recv"][0]["gradient"].get<bool>());
  const auto table = run_cachalot({"dualpipe", "schedule", "--pp", "4", "--micro", "8"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("rank 0 (stages 0, 3)"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("&"), std::string::npos) << table.out;  // overlapped F&B steps
}

TEST(DualPipeCli, SizesAScheduleCannotRunAreErrors) {
  const auto odd = run_cachalot({"dualpipe", "train", "--pp", "3", "--schedule", "dualpipe"});
  EXPECT_EQ(odd.exit_code, 2);
  EXPECT_NE(odd.err.find("even number of ranks"), std::string::npos) << odd.err;
  const auto few = run_cachalot({"dualpipe", "simulate", "--pp", "4", "--micro", "6", "--schedule", "dualpipev"});
  EXPECT_EQ(few.exit_code, 2);
  EXPECT_NE(few.err.find("micro-batches >= 2 x ranks"), std::string::npos) << few.err;
  const auto costs = run_cachalot({"dualpipe", "simulate", "--weight", "3"});
  EXPECT_EQ(costs.exit_code, 2);
  EXPECT_NE(costs.err.find("weight"), std::string::npos) << costs.err;
  const auto unknown = run_cachalot({"dualpipe", "train", "--schedule", "gpipe"});
  EXPECT_EQ(unknown.exit_code, 2);
  // With --schedule all, a family that cannot run the size is skipped with the reason.
  const auto skipped = run_cachalot({"dualpipe", "simulate", "--pp", "3", "--micro", "6"});
  EXPECT_EQ(skipped.exit_code, 0) << skipped.err;
  EXPECT_NE(skipped.out.find("dualpipe   skipped"), std::string::npos) << skipped.out;
}

}  // namespace
}  // namespace cachalot
