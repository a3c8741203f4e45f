// report_table: what `cachalot cost` prints for people.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "cost/report.h"

namespace cachalot::cost {
namespace {

// 1234567 -> "1,234,567" (money and node-hours read better grouped).
std::string grouped(double v, int decimals = 0) {
  const std::string digits = fmt::format("{:.{}f}", std::fabs(v), decimals);
  const size_t whole = std::min(digits.find('.'), digits.size());
  std::string out = v < 0 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && i < whole && (whole - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// Dollars: cents only where they matter.
std::string money(double v) {
  std::string out = "$";
  out += grouped(v, std::fabs(v) < 1000 ? 2 : 0);  // not "$" + ...: g++ 12 warns falsely (-Wrestrict)
  return out;
}

// 6.08e11 -> "608.0B"
std::string tokens(double v) {
  if (v >= 1e12) return fmt::format("{:.2f}T", v / 1e12);
  if (v >= 1e9) return fmt::format("{:.1f}B", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.1f}M", v / 1e6);
  return grouped(v);
}

}  // namespace

std::string report_table(const Report& r) {
  const Scenario& s = r.scenario;
  const bool whole = s.scaling.whole_nodes;
  std::string out = fmt::format("{}\npolicy {}, {} nodes, headroom {:.0f}%, scale-up lag {} h; node {}/h{}\n\n", s.name,
                                s.scaling.policy == Policy::kStatic ? "static peak" : "autoscale",
                                whole ? "whole" : "fractional", s.scaling.headroom * 100, s.scaling.scale_up_lag_hours,
                                money(s.node.price_per_hour),
                                s.node.gpus > 0 ? fmt::format(" ({} GPUs)", s.node.gpus) : "");
  out += fmt::format("{:>4}  {:>12}  {:>5}  {:>12}  {:>9}  {:>9}  {:>9}{}\n", "hour", "input tok/s", "hit", "output tok/s",
                     "prefill", "decode", "nodes", r.concurrent_requests ? fmt::format("  {:>11}", "decoding") : "");
  const int digits = whole && s.scaling.scale_up_lag_hours == std::floor(s.scaling.scale_up_lag_hours) ? 0 : 2;
  for (int h = 0; h < kHours; ++h) {
    out += fmt::format("{:>4}  {:>12}  {:>4.0f}%  {:>12}  {:>9.{}f}  {:>9.{}f}  {:>9.{}f}{}\n", fmt::format("{:02}", h),
                       grouped(s.load.input_tokens_per_s[h]), s.load.cache_hit_ratio[h] * 100,
                       grouped(s.load.output_tokens_per_s[h]), r.prefill.nodes[h], digits, r.decode.nodes[h], digits,
                       r.nodes[h], digits,
                       r.concurrent_requests ? fmt::format("  {:>11}", grouped((*r.concurrent_requests)[h])) : "");
  }
  out += fmt::format("\n{:<28}{:>14}{:>14}{:>14}\n", "", "prefill", "decode", "total");
  auto row = [&](const char* label, double a, double b, double c, int decimals) {
    out += fmt::format("{:<28}{:>14}{:>14}{:>14}\n", label, grouped(a, decimals), grouped(b, decimals), grouped(c, decimals));
  };
  out += fmt::format("{:<28}{:>14}{:>14}\n", "tokens/s per node", grouped(*s.node.prefill_tokens_per_s),
                     grouped(*s.node.decode_tokens_per_s));
  row("node-hours", r.prefill.node_hours, r.decode.node_hours, r.node_hours, 1);
  row("average nodes", r.prefill.node_hours / kHours, r.decode.node_hours / kHours, r.average_nodes, 2);
  row("peak nodes", r.prefill.peak_nodes, r.decode.peak_nodes, r.peak_nodes, 2);
  row("static peak fleet", r.prefill.static_nodes, r.decode.static_nodes, r.static_nodes, 2);
  out += fmt::format("\ntokens: {} input ({} cache hits, {:.1f}%), {} output\n", tokens(r.input_tokens),
                     tokens(r.cache_hit_tokens), r.input_tokens > 0 ? 100 * r.cache_hit_tokens / r.input_tokens : 0.0,
                     tokens(r.output_tokens));
  out += fmt::format("cost:    {} per day ({} node-hours)\n", money(r.cost), grouped(r.node_hours, 1));
  out += fmt::format("revenue: {} per day (cache hits {} + misses {} + output {}), if every token were billed\n",
                     money(r.revenue), money(r.revenue_cache_hit), money(r.revenue_cache_miss), money(r.revenue_output));
  out += fmt::format("margin:  {:.1f}% cost profit margin ((revenue - cost) / cost)\n", r.margin * 100);
  const double freed = r.static_node_hours - r.autoscaled_node_hours;
  out += fmt::format("static peak fleet: {} per day, margin {:.1f}%; autoscaling {} {} ({:.1f}%) and {} {} node-hours for other work\n",
                     money(r.static_cost), r.static_margin * 100,
                     s.scaling.policy == Policy::kStatic ? "would save" : "saves", money(r.savings),
                     r.static_cost > 0 ? 100 * r.savings / r.static_cost : 0.0,
                     s.scaling.policy == Policy::kStatic ? "would free" : "frees", grouped(freed, 1));
  return out;
}

}  // namespace cachalot::cost
