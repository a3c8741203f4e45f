// `cachalot cost SCENARIO [--from-bench FILE] [--json] [--plot out.svg]`: the day's nodes,
// cost, revenue and margin of a deployment scenario (docs/cost.md), and what autoscaling saves.
#include <fmt/format.h>

#include "apps/cachalot/commands.h"
#include "core/file_io.h"
#include "cost/bench_throughput.h"
#include "cost/report.h"
#include "cost/scenario.h"
#include "cost/svg_plot.h"

namespace cachalot::cli {
namespace {

struct Args {
  std::string scenario_path, bench_path, plot_path;
  bool json = false;
};

void run(const Args& a) {
  cost::Scenario scenario = cost::load_scenario(a.scenario_path);
  std::string provenance;
  if (!a.bench_path.empty()) {
    const cost::BenchThroughput bench = cost::parse_bench_throughput(read_text_file(a.bench_path), a.bench_path);
    cost::apply_bench_throughput(scenario, bench);
    if (bench.prefill_tokens_per_s)
      provenance += fmt::format("prefill {:.1f} tokens/s per node from {}\n", *bench.prefill_tokens_per_s, bench.prefill_case);
    if (bench.decode_tokens_per_s)
      provenance += fmt::format("decode {:.1f} tokens/s per node from {}\n", *bench.decode_tokens_per_s, bench.decode_case);
  }
  const cost::Report report = cost::evaluate(scenario);
  if (!a.plot_path.empty()) write_text_file(a.plot_path, cost::plot_svg(report));
  if (a.json) {
    fmt::print("{}\n", cost::report_json(report));
    return;
  }
  fmt::print("{}{}", provenance.empty() ? "" : provenance + "\n", cost::report_table(report));
  if (!a.plot_path.empty()) fmt::print("plot: {}\n", a.plot_path);
}

}  // namespace

void add_cost_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "cost", "a deployment's day: nodes per hour for prefill and decode, cost, revenue, margin, autoscaling savings");
  auto a = std::make_shared<Args>();
  cmd->add_option("scenario", a->scenario_path, "scenario file (YAML or JSON; schema in docs/cost.md)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--from-bench", a->bench_path,
                  "take the per-node throughputs from the JSON lines of `cachalot bench model|serve --json`")
      ->check(CLI::ExistingFile);
  cmd->add_option("--plot", a->plot_path, "draw the load curve and nodes in service into this SVG file");
  cmd->add_flag("--json", a->json, "print the report as one JSON object");
  cmd->callback([a] { run(*a); });
}

}  // namespace cachalot::cli
