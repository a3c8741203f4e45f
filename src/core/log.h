// Logging: spdlog behind a few functions, so every module logs the same way to stderr.
// Level from CACHALOT_LOG (trace|debug|info|warn|error|off) or set_log_level(); default warn,
// so commands print only their results unless asked.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace cachalot::log {

// Configures the process-wide logger (idempotent); called by the CLI before anything logs.
void init();
// Throws Error(kInvalidArgument) on an unknown level name.
void set_level(std::string_view level);

using spdlog::debug;
using spdlog::error;
using spdlog::info;
using spdlog::trace;
using spdlog::warn;

}  // namespace cachalot::log
