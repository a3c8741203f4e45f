// `cachalot cost` end to end: the published day as a table, as JSON and as a plot; throughputs
// from a benchmark's JSON lines; a broken scenario fails with the field named and exit code 2.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "tests/support/test_support.h"

namespace cachalot {
namespace {

using nlohmann::json;
using testing::run_cachalot;

const std::string kExample = std::string(CACHALOT_EXAMPLES_DIR) + "/deepseek-day.yaml";

TEST(CostCli, PublishedDayTableJsonAndPlot) {
  testing::TempDir dir;
  const auto table = run_cachalot({"cost", kExample, "--plot", dir.file("day.svg")});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("margin:  545."), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("plot: " + dir.file("day.svg")), std::string::npos) << table.out;
  EXPECT_NE(read_text_file(dir.file("day.svg")).find("id=\"load-input\""), std::string::npos);

  const auto j = run_cachalot({"cost", kExample, "--json"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const json report = json::parse(j.out);
  EXPECT_NEAR(report["cost"].get<double>(), 87072, 87.072);
  EXPECT_NEAR(report["revenue"]["total"].get<double>(), 562027, 562.027);
  EXPECT_EQ(report["gpus_per_node"], 8);
  EXPECT_EQ(report["nodes"].size(), 24u);
}

TEST(CostCli, ThroughputsFromBenchmarkOutput) {
  testing::TempDir dir;
  write_text_file(dir.file("cpu.yaml"),
                  "name: one CPU box per role\n"
                  "demand:\n  hourly:\n    requests_per_s: [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1]\n"
                  "    input_tokens_per_request: 500\n    output_tokens_per_request: 100\n    cache_hit_ratio: 0.5\n"
                  "node: {price_per_node_hour: 0.5}\n"
                  "prices: {input_cache_hit: 0.14, input_cache_miss: 0.55, output: 2.19}\n"
                  "scaling: {min_prefill_nodes: 1, min_decode_nodes: 1, scale_up_lag_hours: 1}\n");
  write_text_file(dir.file("bench.jsonl"),
                  R"({"bench":"model","case":"v3-slice prefill batch=8 prompt=1024","metric":"prefill_throughput","value":250,"unit":"tokens/s"})"
                  "\n"
                  R"({"bench":"model","case":"v3-slice decode batch=64 context=1024","metric":"decode_throughput","value":50,"unit":"tokens/s"})"
                  "\n");
  const auto r = run_cachalot({"cost", dir.file("cpu.yaml"), "--from-bench", dir.file("bench.jsonl"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json report = json::parse(r.out);
  EXPECT_EQ(report["prefill"]["tokens_per_s_per_node"], 250);
  EXPECT_EQ(report["prefill_counts"], "cache_miss");
  // 2 requests/s: 500 computed prefill tokens/s = 2 nodes, 200 output tokens/s = 4 nodes.
  EXPECT_EQ(report["prefill"]["needed_nodes"][8], 2);
  EXPECT_EQ(report["decode"]["needed_nodes"][8], 4);
  EXPECT_EQ(report["decode"]["needed_nodes"][0], 2);
  EXPECT_EQ(report["decode"]["nodes"][7], 4);  // started an hour early

  const auto table = run_cachalot({"cost", dir.file("cpu.yaml"), "--from-bench", dir.file("bench.jsonl")});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("prefill 250.0 tokens/s per node from bench model: v3-slice prefill batch=8"), std::string::npos)
      << table.out;
}

TEST(CostCli, BadScenarioNamesTheField) {
  testing::TempDir dir;
  write_text_file(dir.file("bad.yaml"),
                  "demand:\n  hourly:\n    input_tokens_per_s: [1, 2, 3]\n    output_tokens_per_s: [1]\n    cache_hit_ratio: 0\n"
                  "node: {price_per_node_hour: 1, prefill_tokens_per_s: 1, decode_tokens_per_s: 1}\n"
                  "prices: {input_cache_hit: 0, input_cache_miss: 0, output: 0}\n");
  const auto r = run_cachalot({"cost", dir.file("bad.yaml")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("demand.hourly.input_tokens_per_s: needs 24 hourly entries, got 3"), std::string::npos) << r.err;

  write_text_file(dir.file("no-rate.yaml"),
                  "demand: {daily: {input_tokens: 1, cache_hit_ratio: 0, output_tokens: 1}}\n"
                  "node: {price_per_node_hour: 1}\n"
                  "prices: {input_cache_hit: 0, input_cache_miss: 0, output: 0}\n");
  const auto missing = run_cachalot({"cost", dir.file("no-rate.yaml")});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("node.prefill_tokens_per_s: missing"), std::string::npos) << missing.err;

  const auto not_bench = run_cachalot({"cost", kExample, "--from-bench", dir.file("bad.yaml")});
  EXPECT_EQ(not_bench.exit_code, 2);
  EXPECT_NE(not_bench.err.find("line 1: not a JSON object"), std::string::npos) << not_bench.err;
}

}  // namespace
}  // namespace cachalot
