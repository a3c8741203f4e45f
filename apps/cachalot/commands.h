// Each subcommand of `cachalot` registers itself on the CLI11 app; its callback runs the
// command and throws cachalot::Error on failure (main turns that into one line on stderr).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace cachalot::cli {

void add_version_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_init_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_eplb_command(CLI::App& app);
void add_dualpipe_command(CLI::App& app);
void add_cost_command(CLI::App& app);

// Appended to --trace's path when the trace is written: a process that is not the first of an
// mpirun group writes its own file (FILE.rank1, ...).
void set_trace_path_suffix(std::string suffix);
const std::string& trace_path_suffix();

}  // namespace cachalot::cli
