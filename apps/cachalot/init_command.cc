// `cachalot init --preset tiny|mini|v3-slice --out DIR [--seed S]`: writes a random checkpoint in
// the official DeepSeek-V3 layout (no real weights can be downloaded here), for demos and
// benchmarks.
#include <fmt/format.h>

#include <chrono>
#include <memory>

#include "apps/cachalot/commands.h"
#include "model/random_checkpoint.h"

namespace cachalot::cli {

void add_init_command(CLI::App& app) {
  struct Args {
    std::string preset, out;
    uint64_t seed = 0;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("init", "write a random checkpoint in the official layout (FP8 + scale_inv)");
  cmd->add_option("--preset", args->preset, "tiny, mini or v3-slice")
      ->required()
      ->check(CLI::IsMember(model::preset_names()));
  cmd->add_option("--out", args->out, "folder to write (created if missing)")->required();
  cmd->add_option("--seed", args->seed, "random seed (default 0)");
  cmd->callback([args] {
    const auto t0 = std::chrono::steady_clock::now();
    const model::WriteSummary s =
        model::write_random_checkpoint(model::preset_config(args->preset), args->out, args->seed);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("wrote {} ({} tensors, {} shards, {:.1f} MiB) in {:.1f} s\n", args->out, s.tensors, s.shards,
               static_cast<double>(s.bytes) / (1 << 20), seconds);
  });
}

}  // namespace cachalot::cli
