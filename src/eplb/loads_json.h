// Expert loads as JSON, the input of `cachalot eplb`: either [[layer 0's loads], [layer 1's], ...]
// or {"loads": [[...], ...]} (what the engine's /eplb/loads endpoint and `--json` outputs carry).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cachalot::eplb {

struct Loads {
  int64_t layers = 0, experts = 0;
  std::vector<float> values;  // [layers][experts]
};

// Error(kInvalidArgument) naming what is wrong: not JSON, not a list of equal-length lists of
// numbers, a negative or non-finite load.
Loads parse_loads_json(const std::string& text);

}  // namespace cachalot::eplb
