#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <mutex>

#include "core/error.h"

namespace cachalot::log {

void init() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto logger = spdlog::stderr_color_mt("cachalot");
    logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::warn);
    if (const char* env = std::getenv("CACHALOT_LOG")) set_level(env);
  });
}

void set_level(std::string_view level) {
  const auto parsed = spdlog::level::from_str(std::string(level));
  // from_str maps unknown names to "off"; only accept "off" when it was asked for.
  if (parsed == spdlog::level::off && level != "off")
    raise(ErrorKind::kInvalidArgument,
          "unknown log level '{}': use trace, debug, info, warn, error or off", level);
  spdlog::set_level(parsed);
}

}  // namespace cachalot::log
