#include "eplb/loads_json.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace cachalot::eplb {

Loads parse_loads_json(const std::string& text) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    raise(ErrorKind::kInvalidArgument, "loads: not JSON: {}", e.what());
  }
  const nlohmann::json& rows = doc.is_object() && doc.contains("loads") ? doc["loads"] : doc;
  CACHALOT_CHECK_ARG(rows.is_array() && !rows.empty(),
                     "loads: expected a non-empty list of per-layer lists (or {{\"loads\": [...]}})");
  Loads loads;
  loads.layers = static_cast<int64_t>(rows.size());
  for (size_t l = 0; l < rows.size(); ++l) {
    const nlohmann::json& row = rows[l];
    CACHALOT_CHECK_ARG(row.is_array() && !row.empty(), "loads: layer {} is not a non-empty list of numbers", l);
    if (l == 0) loads.experts = static_cast<int64_t>(row.size());
    CACHALOT_CHECK_ARG(static_cast<int64_t>(row.size()) == loads.experts, "loads: layer {} has {} experts, layer 0 has {}", l,
                       row.size(), loads.experts);
    for (size_t e = 0; e < row.size(); ++e) {
      CACHALOT_CHECK_ARG(row[e].is_number(), "loads: layer {} expert {} is not a number: {}", l, e, row[e].dump());
      const double v = row[e].get<double>();
      CACHALOT_CHECK_ARG(std::isfinite(v) && v >= 0, "loads: layer {} expert {} is {}; loads must be >= 0", l, e, v);
      loads.values.push_back(static_cast<float>(v));
    }
  }
  return loads;
}

}  // namespace cachalot::eplb
