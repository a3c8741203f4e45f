// cachalot: the one command-line program. `cachalot --help` lists the commands.
#include <cstdio>
#include <string>

#include "apps/cachalot/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/trace.h"

namespace cachalot::cli {
namespace {
std::string& suffix_storage() {
  static std::string suffix;
  return suffix;
}
}  // namespace
void set_trace_path_suffix(std::string suffix) { suffix_storage() = std::move(suffix); }
const std::string& trace_path_suffix() { return suffix_storage(); }
}  // namespace cachalot::cli

int main(int argc, char** argv) {
  using namespace cachalot;
  CLI::App app{
      "cachalot: a C++ implementation of the DeepSeek-V3/R1 inference system\n"
      "(FP8 GEMM, MLA decode, the model, serving, expert parallelism, EPLB, DualPipe, cost model)",
      "cachalot"};
  app.require_subcommand(1);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("cachalot: error: ") + e.what() + " (see --help)\n";
  });
  std::string log_level;
  std::string trace_path;
  app.add_option("--log-level", log_level, "trace, debug, info, warn (default), error or off");
  app.add_option("--trace", trace_path, "record a Chrome/Perfetto trace of the command into FILE");
  app.set_version_flag("--version", std::string(CACHALOT_VERSION));

  cli::add_version_command(app);
  cli::add_inspect_command(app);
  cli::add_bench_command(app);
  cli::add_init_command(app);
  cli::add_generate_command(app);
  cli::add_tokenize_command(app);
  cli::add_serve_command(app);
  cli::add_eplb_command(app);
  cli::add_dualpipe_command(app);
  cli::add_cost_command(app);

  try {
    log::init();
    app.parse_complete_callback([&] {
      if (!log_level.empty()) log::set_level(log_level);
      if (!trace_path.empty()) trace::set_enabled(true);
    });
    app.parse(argc, argv);
    if (!trace_path.empty()) trace::write_chrome_json(trace_path + cli::trace_path_suffix());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const Error& e) {
    std::fprintf(stderr, "cachalot: error: %s\n", e.what());
    return e.kind() == ErrorKind::kInvalidArgument ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cachalot: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
