// The day's economics: DeepSeek's published day reproduced from examples/deepseek-day.yaml,
// small scenarios checked by hand, throughputs from benchmark output, the JSON, table and SVG.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <pugixml.hpp>

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "cost/bench_throughput.h"
#include "cost/report.h"
#include "cost/svg_plot.h"

namespace cachalot::cost {
namespace {

const std::string kExample = std::string(CACHALOT_EXAMPLES_DIR) + "/deepseek-day.yaml";

// One node of each role in hour 0 and nothing else all day.
Scenario one_hour_one_node() {
  Scenario s;
  s.name = "one hour";
  s.load.input_tokens_per_s[0] = 1000;
  s.load.cache_hit_ratio[0] = 0.5;
  s.load.output_tokens_per_s[0] = 100;
  s.node.prefill_tokens_per_s = 1000;
  s.node.decode_tokens_per_s = 100;
  s.node.price_per_hour = 10;
  s.prices = {.input_cache_hit = 1, .input_cache_miss = 2, .output = 3};
  return s;
}

TEST(Report, PublishedDayReproduced) {
  const Report r = evaluate(load_scenario(kExample));
  // DeepSeek: $87,072 cost, $562,027 theoretical revenue, 545% margin; average 226.75 nodes,
  // peak 278; 608B input tokens (342B cache hits), 168B output.
  EXPECT_NEAR(r.cost, 87072, 87072 * 1e-3);
  EXPECT_NEAR(r.revenue, 562027, 562027 * 1e-3);
  EXPECT_EQ(std::lround(r.margin * 100), 545);
  EXPECT_NEAR(r.average_nodes, 226.75, 226.75 * 1e-3);
  EXPECT_NEAR(r.peak_nodes, 278, 1);
  EXPECT_NEAR(r.input_tokens, 608e9, 1e3);
  EXPECT_NEAR(r.cache_hit_tokens, 342e9, 1e3);
  EXPECT_NEAR(r.output_tokens, 168e9, 1e3);
  EXPECT_EQ(r.scenario.node.gpus, 8);
  // Autoscaled against a fleet of 278 nodes all day.
  EXPECT_NEAR(r.static_nodes, r.peak_nodes, 1e-9);
  EXPECT_NEAR(r.savings, r.static_cost - r.cost, 1e-6);
  EXPECT_GT(r.savings, 0.15 * r.static_cost);
  // 20-22 tokens/s per request: about 90k requests decoding at once on average.
  ASSERT_TRUE(r.concurrent_requests.has_value());
  EXPECT_NEAR((*r.concurrent_requests)[15], r.scenario.load.output_tokens_per_s[15] / 21, 1e-9);
}

TEST(Report, OneHourOneNodeByHand) {
  const Report r = evaluate(one_hour_one_node());
  EXPECT_EQ(r.prefill.nodes[0], 1);
  EXPECT_EQ(r.decode.nodes[0], 1);
  EXPECT_EQ(r.nodes[0], 2);
  EXPECT_EQ(r.nodes[1], 0);
  EXPECT_EQ(r.node_hours, 2);
  EXPECT_EQ(r.cost, 20);
  EXPECT_EQ(r.static_nodes, 2);
  EXPECT_EQ(r.static_node_hours, 48);
  EXPECT_EQ(r.static_cost, 480);
  EXPECT_EQ(r.autoscaled_cost, 20);
  EXPECT_EQ(r.savings, 460);
  // 3.6M input tokens, half of them cache hits, and 0.36M output tokens.
  EXPECT_DOUBLE_EQ(r.input_tokens, 3.6e6);
  EXPECT_DOUBLE_EQ(r.cache_hit_tokens, 1.8e6);
  EXPECT_DOUBLE_EQ(r.output_tokens, 0.36e6);
  EXPECT_DOUBLE_EQ(r.revenue_cache_hit, 1.8);
  EXPECT_DOUBLE_EQ(r.revenue_cache_miss, 3.6);
  EXPECT_DOUBLE_EQ(r.revenue_output, 1.08);
  EXPECT_DOUBLE_EQ(r.revenue, 6.48);
  EXPECT_DOUBLE_EQ(r.margin, (6.48 - 20) / 20);
  EXPECT_DOUBLE_EQ(r.static_margin, (6.48 - 480) / 480);
  EXPECT_FALSE(r.concurrent_requests.has_value());
}

TEST(Report, StaticPolicyAndMinimumFleet) {
  Scenario s = one_hour_one_node();
  s.scaling.policy = Policy::kStatic;
  s.scaling.min_decode_nodes = 1;
  const Report r = evaluate(s);
  EXPECT_EQ(r.node_hours, 48);
  EXPECT_EQ(r.cost, 480);
  EXPECT_EQ(r.autoscaled_cost, (1 + 24) * 10);  // prefill 1 node-hour, decode its minimum all day
  EXPECT_EQ(r.savings, 480 - 250);
}

TEST(Report, PrefillCountingCacheMissesOnly) {
  Scenario s = one_hour_one_node();
  s.node.prefill_basis = PrefillBasis::kCacheMiss;
  s.node.prefill_tokens_per_s = 250;  // 500 computed tokens/s need two nodes
  const Report r = evaluate(s);
  EXPECT_EQ(r.prefill.demand_tokens_per_s[0], 500);
  EXPECT_EQ(r.prefill.nodes[0], 2);
}

TEST(Report, MissingThroughputNamesTheField) {
  Scenario s = one_hour_one_node();
  s.node.decode_tokens_per_s.reset();
  try {
    evaluate(s);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("node.decode_tokens_per_s: missing"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--from-bench"), std::string::npos) << e.what();
  }
}

TEST(Report, JsonCarriesTheFigures) {
  const Report r = evaluate(one_hour_one_node());
  const nlohmann::json j = nlohmann::json::parse(report_json(r));
  EXPECT_EQ(j["name"], "one hour");
  EXPECT_EQ(j["cost"], 20);
  EXPECT_DOUBLE_EQ(j["revenue"]["total"].get<double>(), 6.48);
  EXPECT_EQ(j["static_peak"]["cost"], 480);
  EXPECT_EQ(j["autoscaling_savings"], 460);
  EXPECT_EQ(j["prefill"]["nodes"].size(), 24u);
  EXPECT_EQ(j["decode"]["needed_nodes"][0], 1);
  EXPECT_EQ(j["nodes"][0], 2);
  EXPECT_EQ(j["policy"], "autoscale");
  EXPECT_FALSE(j.contains("concurrent_requests"));
}

TEST(Report, TableShowsHoursAndTotals) {
  const std::string table = report_table(evaluate(load_scenario(kExample)));
  EXPECT_NE(table.find("cost:    $87,1"), std::string::npos) << table;
  EXPECT_NE(table.find("revenue: $562,100"), std::string::npos) << table;
  EXPECT_NE(table.find("margin:  545."), std::string::npos) << table;
  EXPECT_NE(table.find("\n  23  "), std::string::npos) << table;
  EXPECT_NE(table.find("autoscaling saves $"), std::string::npos) << table;
}

TEST(BenchThroughput, ModelFiguresPreferredAndBest) {
  const std::string lines =
      R"({"bench":"model","case":"v3-slice prefill batch=1 prompt=1024","metric":"prefill_throughput","value":120.5,"unit":"tokens/s"})"
      "\n"
      R"({"bench":"model","case":"v3-slice prefill batch=8 prompt=1024","metric":"prefill_throughput","value":180.25,"unit":"tokens/s"})"
      "\n\n"
      R"({"bench":"model","case":"v3-slice decode batch=64 context=1024","metric":"decode_throughput","value":40,"unit":"tokens/s"})"
      "\n"
      R"({"bench":"model","case":"v3-slice decode batch=1 context=1024","metric":"read_bandwidth","value":900,"unit":"GB/s"})"
      "\n"
      R"({"bench":"serve","case":"mini rate=max requests=64","metric":"output_throughput","value":99,"unit":"tokens/s"})"
      "\n";
  const BenchThroughput b = parse_bench_throughput(lines, "b.jsonl");
  EXPECT_EQ(*b.prefill_tokens_per_s, 180.25);
  EXPECT_EQ(b.prefill_basis, PrefillBasis::kCacheMiss);
  EXPECT_NE(b.prefill_case.find("batch=8"), std::string::npos);
  EXPECT_EQ(*b.decode_tokens_per_s, 40);

  Scenario s = one_hour_one_node();
  s.node.prefill_tokens_per_s.reset();
  apply_bench_throughput(s, b);
  const Report r = evaluate(s);
  EXPECT_EQ(r.prefill.demand_tokens_per_s[0], 500);  // cache misses only
  EXPECT_EQ(r.prefill.nodes[0], 3);                  // 500 / 180.25
  EXPECT_EQ(r.decode.nodes[0], 3);                   // 100 / 40
}

TEST(BenchThroughput, ServeSaturatedRunOnly) {
  const std::string lines =
      R"({"bench":"serve","case":"mini rate=4/s requests=64","metric":"output_throughput","value":500,"unit":"tokens/s"})"
      "\n"
      R"({"bench":"serve","case":"mini rate=max requests=64","metric":"output_throughput","value":70,"unit":"tokens/s"})"
      "\n"
      R"({"bench":"serve","case":"mini rate=max requests=64","metric":"input_throughput","value":300,"unit":"tokens/s"})"
      "\n";
  const BenchThroughput b = parse_bench_throughput(lines, "b.jsonl");
  EXPECT_EQ(*b.decode_tokens_per_s, 70);
  EXPECT_EQ(*b.prefill_tokens_per_s, 300);
  EXPECT_EQ(b.prefill_basis, PrefillBasis::kInput);
}

TEST(BenchThroughput, BadFilesAreNamed) {
  auto message = [](const std::string& text) {
    try {
      parse_bench_throughput(text, "b.jsonl");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message("{\"bench\":\"model\"}\nname   value\n").find("b.jsonl line 2: not a JSON object"), std::string::npos);
  EXPECT_NE(message("{\"bench\":\"gemm\",\"metric\":\"tflops\",\"value\":1}\n").find("no prefill or decode throughput"),
            std::string::npos);
  EXPECT_NE(message("").find("no prefill or decode throughput"), std::string::npos);
}

TEST(SvgPlot, WellFormedWithTheCurves) {
  Scenario s = load_scenario(kExample);
  s.name = "day <1> & \"quotes\"";  // escaped, or the XML would not parse
  const Report r = evaluate(s);
  const std::string svg = plot_svg(r);
  pugi::xml_document doc;
  const pugi::xml_parse_result parsed = doc.load_string(svg.c_str());
  ASSERT_TRUE(parsed) << parsed.description() << " at " << parsed.offset;
  const pugi::xml_node root = doc.child("svg");
  ASSERT_TRUE(root);
  EXPECT_EQ(std::string(root.child_value("title")), s.name);

  // Each hourly series is a step line of 48 points; its highest point (smallest y) is the
  // busiest hour, and its x spans the day.
  auto points = [&](const char* id) {
    const pugi::xml_node n = root.find_child_by_attribute("polyline", "id", id);
    EXPECT_TRUE(n) << id;
    std::vector<std::pair<double, double>> out;
    std::istringstream in(n.attribute("points").value());
    for (std::string pair; in >> pair;) {
      const size_t comma = pair.find(',');
      out.emplace_back(std::stod(pair.substr(0, comma)), std::stod(pair.substr(comma + 1)));
    }
    return out;
  };
  const auto& input = r.scenario.load.input_tokens_per_s;
  const int busiest = static_cast<int>(std::max_element(input.begin(), input.end()) - input.begin());
  for (const char* id : {"load-input", "nodes-total"}) {
    const auto p = points(id);
    ASSERT_EQ(p.size(), 48u) << id;
    const size_t top = std::min_element(p.begin(), p.end(), [](auto a, auto b) { return a.second < b.second; }) - p.begin();
    EXPECT_EQ(static_cast<int>(top / 2), busiest) << id;
    EXPECT_LT(p.front().first, p.back().first);
    for (size_t i = 1; i < p.size(); ++i) EXPECT_GE(p[i].first, p[i - 1].first) << id;
  }
  EXPECT_EQ(points("load-output").size(), 48u);
  // The static peak is flat at the top of the node curve.
  const auto peak = points("static-peak");
  const auto total = points("nodes-total");
  ASSERT_EQ(peak.size(), 48u);
  for (const auto& [x, y] : peak) EXPECT_NEAR(y, peak[0].second, 1e-9);
  EXPECT_NEAR(peak[0].second, std::min_element(total.begin(), total.end(), [](auto a, auto b) { return a.second < b.second; })->second, 0.11);
  EXPECT_TRUE(root.find_child_by_attribute("polygon", "id", "nodes-prefill"));
  EXPECT_TRUE(root.find_child_by_attribute("polygon", "id", "nodes-decode"));
}

}  // namespace
}  // namespace cachalot::cost
