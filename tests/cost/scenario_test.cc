// Scenario files: both demand forms, defaults, and an error naming the field for each way a
// file can be wrong.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "cost/scenario.h"

namespace cachalot::cost {
namespace {

// A valid scenario with `demand` and `scaling` sections swapped in.
std::string scenario_text(const std::string& demand, const std::string& node_extra = "", const std::string& tail = "") {
  return "name: test\n"
         "demand:\n" + demand +
         "node:\n"
         "  price_per_node_hour: 10\n"
         "  prefill_tokens_per_s: 1000\n"
         "  decode_tokens_per_s: 100\n" + node_extra +
         "prices:\n"
         "  input_cache_hit: 1\n"
         "  input_cache_miss: 2\n"
         "  output: 3\n" + tail;
}

const std::string kDaily =
    "  daily:\n"
    "    input_tokens: 86400e3\n"
    "    cache_hit_ratio: 0.25\n"
    "    output_tokens: 8640e3\n";

std::string curve(double first, double rest, int n = kHours) {
  std::string s = "[";
  for (int h = 0; h < n; ++h) s += (h ? ", " : "") + std::to_string(h == 0 ? first : rest);
  return s + "]";
}

// The message of the Error parse_scenario throws for `text`, or "" if it parsed.
std::string parse_error(const std::string& text) {
  try {
    parse_scenario(text, "s.yaml");
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    return e.what();
  }
  return "";
}

TEST(Scenario, DailyVolumesSpreadFlatByDefault) {
  const Scenario s = parse_scenario(scenario_text(kDaily));
  EXPECT_EQ(s.name, "test");
  for (int h = 0; h < kHours; ++h) {
    EXPECT_DOUBLE_EQ(s.load.input_tokens_per_s[h], 1000);
    EXPECT_DOUBLE_EQ(s.load.output_tokens_per_s[h], 100);
    EXPECT_DOUBLE_EQ(s.load.cache_hit_ratio[h], 0.25);
  }
  EXPECT_DOUBLE_EQ(s.node.price_per_hour, 10);
  EXPECT_EQ(s.node.gpus, 0);
  EXPECT_EQ(s.node.prefill_basis, PrefillBasis::kInput);
  EXPECT_EQ(s.scaling.policy, Policy::kAutoscale);
  EXPECT_TRUE(s.scaling.whole_nodes);
  EXPECT_FALSE(s.load.output_speed_tokens_per_s.has_value());
}

TEST(Scenario, DailyShapeAndHitTokens) {
  const Scenario s = parse_scenario(scenario_text(
      "  daily:\n    input_tokens: 7200\n    cache_hit_tokens: 1800\n    output_tokens: 3600\n"
      "    hourly_shape: " + curve(1, 0) + "\n"));
  EXPECT_DOUBLE_EQ(s.load.input_tokens_per_s[0], 2);
  EXPECT_DOUBLE_EQ(s.load.output_tokens_per_s[0], 1);
  EXPECT_DOUBLE_EQ(s.load.input_tokens_per_s[1], 0);
  EXPECT_DOUBLE_EQ(s.load.cache_hit_ratio[5], 0.25);
}

TEST(Scenario, HourlyTokensAndRequests) {
  const Scenario tokens = parse_scenario(scenario_text("  hourly:\n    input_tokens_per_s: " + curve(5, 1) +
                                                      "\n    output_tokens_per_s: " + curve(2, 0) +
                                                      "\n    cache_hit_ratio: " + curve(0.5, 0.1) + "\n"));
  EXPECT_DOUBLE_EQ(tokens.load.input_tokens_per_s[0], 5);
  EXPECT_DOUBLE_EQ(tokens.load.input_tokens_per_s[23], 1);
  EXPECT_DOUBLE_EQ(tokens.load.cache_hit_ratio[0], 0.5);
  EXPECT_DOUBLE_EQ(tokens.load.cache_hit_ratio[1], 0.1);

  const Scenario requests = parse_scenario(
      scenario_text("  hourly:\n    requests_per_s: " + curve(2, 1) +
                    "\n    input_tokens_per_request: 1000\n    output_tokens_per_request: 300\n    cache_hit_ratio: 0.5\n"
                    "  output_speed_tokens_per_s: 20\n"));
  EXPECT_DOUBLE_EQ(requests.load.input_tokens_per_s[0], 2000);
  EXPECT_DOUBLE_EQ(requests.load.output_tokens_per_s[0], 600);
  EXPECT_DOUBLE_EQ(requests.load.output_tokens_per_s[1], 300);
  EXPECT_DOUBLE_EQ(*requests.load.output_speed_tokens_per_s, 20);
}

TEST(Scenario, GpuPricingScalingAndJson) {
  // JSON is YAML: the same schema either way.
  const Scenario s = parse_scenario(R"({"demand": {"daily": {"input_tokens": 1, "cache_hit_ratio": 0, "output_tokens": 1}},
    "node": {"gpus": 8, "price_per_gpu_hour": 2, "prefill_tokens_per_s": 5, "decode_tokens_per_s": 6, "prefill_counts": "cache_miss"},
    "prices": {"input_cache_hit": 0, "input_cache_miss": 0, "output": 0},
    "scaling": {"policy": "static", "whole_nodes": false, "headroom": 0.2, "min_prefill_nodes": 1, "min_decode_nodes": 2,
                "scale_up_lag_hours": 0.5}})");
  EXPECT_EQ(s.node.gpus, 8);
  EXPECT_DOUBLE_EQ(s.node.price_per_hour, 16);
  EXPECT_EQ(s.node.prefill_basis, PrefillBasis::kCacheMiss);
  EXPECT_EQ(s.scaling.policy, Policy::kStatic);
  EXPECT_FALSE(s.scaling.whole_nodes);
  EXPECT_DOUBLE_EQ(s.scaling.headroom, 0.2);
  EXPECT_DOUBLE_EQ(s.scaling.min_prefill_nodes, 1);
  EXPECT_DOUBLE_EQ(s.scaling.min_decode_nodes, 2);
  EXPECT_DOUBLE_EQ(s.scaling.scale_up_lag_hours, 0.5);
}

TEST(Scenario, ThroughputsMayComeLater) {
  const Scenario s = parse_scenario("demand:\n" + kDaily + "node: {price_per_node_hour: 1}\nprices: {input_cache_hit: 0, input_cache_miss: 0, output: 0}\n");
  EXPECT_FALSE(s.node.prefill_tokens_per_s.has_value());
  EXPECT_FALSE(s.node.decode_tokens_per_s.has_value());
}

TEST(Scenario, ErrorsNameTheField) {
  auto expect_error = [](const std::string& text, const std::string& needle) {
    const std::string message = parse_error(text);
    EXPECT_NE(message.find(needle), std::string::npos) << "message: '" << message << "', expected: " << needle;
    EXPECT_EQ(message.rfind("s.yaml: ", 0), 0u) << message;
  };
  // Missing fields.
  expect_error("node: {}\n", "demand: missing");
  expect_error(scenario_text("  daily:\n    input_tokens: 1\n    cache_hit_ratio: 0\n"), "demand.daily.output_tokens: missing");
  expect_error(scenario_text(kDaily).replace(scenario_text(kDaily).find("  output: 3\n"), 12, ""), "prices.output: missing");
  expect_error(scenario_text("  daily:\n    input_tokens: 1\n    output_tokens: 1\n"),
               "needs exactly one of demand.daily.cache_hit_tokens and demand.daily.cache_hit_ratio");
  // Negative, out-of-range and non-numeric values.
  expect_error(scenario_text("  daily:\n    input_tokens: -1\n    cache_hit_ratio: 0\n    output_tokens: 1\n"),
               "demand.daily.input_tokens: must be >= 0, got -1");
  expect_error(scenario_text(kDaily, "  gpus: 2.5\n"), "node.gpus: must be a whole number, got 2.5");
  expect_error("demand:\n" + kDaily + "node: {price_per_gpu_hour: 2}\nprices: {input_cache_hit: 0, input_cache_miss: 0, output: 0}\n",
               "node.gpus: missing");
  expect_error(scenario_text("  daily:\n    input_tokens: 1\n    cache_hit_ratio: 1.5\n    output_tokens: 1\n"),
               "demand.daily.cache_hit_ratio: must be in [0, 1], got 1.5");
  expect_error(scenario_text("  daily:\n    input_tokens: lots\n    cache_hit_ratio: 0\n    output_tokens: 1\n"),
               "demand.daily.input_tokens: expected a finite number, got 'lots'");
  expect_error(scenario_text("  daily:\n    input_tokens: 10\n    cache_hit_tokens: 11\n    output_tokens: 1\n"),
               "demand.daily.cache_hit_tokens: 11 is more than input_tokens 10");
  std::string zero_rate = scenario_text(kDaily);
  zero_rate.replace(zero_rate.find("decode_tokens_per_s: 100"), 24, "decode_tokens_per_s: 0");
  expect_error(zero_rate, "node.decode_tokens_per_s: must be > 0, got 0");
  // Curves that are not 24 entries, or hold a bad entry.
  expect_error(scenario_text("  hourly:\n    input_tokens_per_s: " + curve(1, 1, 23) + "\n    output_tokens_per_s: " +
                             curve(1, 1) + "\n    cache_hit_ratio: 0\n"),
               "demand.hourly.input_tokens_per_s: needs 24 hourly entries, got 23");
  expect_error(scenario_text("  hourly:\n    input_tokens_per_s: 5\n    output_tokens_per_s: " + curve(1, 1) +
                             "\n    cache_hit_ratio: 0\n"),
               "demand.hourly.input_tokens_per_s: needs 24 hourly entries, got a non-list");
  expect_error(scenario_text("  hourly:\n    input_tokens_per_s: " + curve(-3, 1) + "\n    output_tokens_per_s: " +
                             curve(1, 1) + "\n    cache_hit_ratio: 0\n"),
               "demand.hourly.input_tokens_per_s[0]: must be >= 0, got -3");
  expect_error(scenario_text("  hourly:\n    input_tokens_per_s: " + curve(1, 1) + "\n    output_tokens_per_s: " +
                             curve(1, 1) + "\n    cache_hit_ratio: " + curve(0.5, 2) + "\n"),
               "demand.hourly.cache_hit_ratio[1]: must be in [0, 1], got 2");
  expect_error(scenario_text("  daily:\n    input_tokens: 1\n    cache_hit_ratio: 0\n    output_tokens: 1\n"
                             "    hourly_shape: " + curve(0, 0) + "\n"),
               "demand.daily.hourly_shape: is zero every hour");
  // Typos, wrong choices, both forms at once, bad YAML, an empty file.
  expect_error(scenario_text(kDaily, "  prefil_tokens_per_s: 3\n"), "node.prefil_tokens_per_s: unknown field");
  expect_error(scenario_text(kDaily, "", "scaling: {policy: sometimes}\n"), "scaling.policy: 'sometimes' is not one of: autoscale, static");
  expect_error(scenario_text(kDaily, "", "scaling: {whole_nodes: maybe}\n"), "scaling.whole_nodes: expected true or false");
  expect_error(scenario_text(kDaily, "", "scaling: {scale_up_lag_hours: 30}\n"), "scaling.scale_up_lag_hours: must be at most 24");
  expect_error(scenario_text(kDaily + "  hourly: {}\n"), "needs exactly one of demand.daily and demand.hourly");
  expect_error("demand: [1, 2\n", "not valid YAML");
  expect_error("", "the file is empty");
  expect_error("- 1\n- 2\n", "the file: must be a map of fields");
}

TEST(Scenario, MissingFileNamesIt) {
  try {
    load_scenario("/nonexistent/day.yaml");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/day.yaml"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cachalot::cost
