// `cachalot bench <what>`: runs one benchmark (or `all`), printing a table or, with --json, one
// JSON object per case and metric (DESIGN.md's machine-readable format).
#include <fmt/format.h>

#include "apps/cachalot/commands.h"
#include "bench/benches.h"
#include "core/error.h"

namespace cachalot::cli {

void add_bench_command(CLI::App& app) {
  std::string help = "run a benchmark beside its peer measured in the same run:";
  for (const auto& b : bench::all_benches()) help += "\n  " + b.name + ": " + b.description;
  auto* cmd = app.add_subcommand("bench", help);
  struct Args {
    std::string what;
    bool json = false;
    bench::Options options;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("WHAT", args->what, "which benchmark, or 'all'")->required();
  cmd->add_flag("--json", args->json, "one JSON object per line");
  cmd->add_flag("--quick", args->options.quick, "fewer sizes and repeats (a smoke run)");
  cmd->add_option("--model", args->options.model_dir,
                  "bench model: checkpoint folder (default: bench-models/v3-slice, or mini with --quick, written once)");
  cmd->add_option("--url", args->options.url,
                  "bench serve: load the server running at http://HOST:PORT instead of starting one "
                  "(with --model DIR, the checkpoint it runs, for the raw-model peers)");
  // Internal: `bench ep` starts itself under mpirun with this to measure its MPI peer.
  cmd->add_flag("--mpi-peer", args->options.mpi_peer)->group("");
  cmd->callback([args] {
    const std::string& what = args->what;
    bench::Reporter reporter(args->json);
    bool found = false;
    for (const auto& b : bench::all_benches()) {
      if (what != "all" && what != b.name) continue;
      found = true;
      b.run(args->options, reporter);
      reporter.finish();
    }
    if (!found) {
      std::string names;
      for (const auto& b : bench::all_benches()) names += (names.empty() ? "" : ", ") + b.name;
      raise(ErrorKind::kInvalidArgument, "unknown benchmark '{}': choose one of {} or all", what, names);
    }
  });
}

}  // namespace cachalot::cli
