// The scenario file (docs/cost.md) read with yaml-cpp. Each map is read through a FieldReader
// that remembers which keys were used, so a misspelt key is an error rather than a silently
// ignored setting, and every message carries the dotted path of the field.
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>
#include <vector>

#include "core/error.h"
#include "core/file_io.h"
#include "cost/scenario.h"

namespace cachalot::cost {
namespace {

class FieldReader {
 public:
  FieldReader(const YAML::Node& map, std::string path, std::string_view origin)
      : map_(map), path_(std::move(path)), origin_(origin) {
    if (!map_.IsMap()) fail(here(), "must be a map of fields");
  }

  [[noreturn]] void fail(const std::string& field, std::string_view what) const {
    raise(ErrorKind::kInvalidArgument, "{}: {}: {}", origin_, field, what);
  }

  // This map's own name in messages.
  std::string here() const { return path_.empty() ? "the file" : path_; }

  std::string path_of(std::string_view key) const { return path_.empty() ? std::string(key) : path_ + "." + std::string(key); }

  bool has(std::string_view key) const {
    const YAML::Node n = map_[std::string(key)];
    return n.IsDefined() && !n.IsNull();
  }

  YAML::Node node(std::string_view key) {
    used_.insert(std::string(key));
    return map_[std::string(key)];
  }

  YAML::Node required_node(std::string_view key) {
    if (!has(key)) fail(path_of(key), "missing");
    return node(key);
  }

  FieldReader child(std::string_view key) { return FieldReader(required_node(key), path_of(key), origin_); }

  double number(const std::string& at, const YAML::Node& n) const {
    if (!n.IsScalar()) fail(at, "expected a number");
    const std::string& text = n.Scalar();
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(v))
      fail(at, fmt::format("expected a finite number, got '{}'", text));
    return v;
  }

  // A number >= 0 (rates, prices, counts); `positive` also refuses 0 (throughputs).
  double rate(std::string_view key, bool positive = false) {
    const double v = number(path_of(key), required_node(key));
    check_rate(path_of(key), v, positive);
    return v;
  }
  double rate_or(std::string_view key, double fallback) { return has(key) ? rate(key) : fallback; }

  double ratio(std::string_view key) {
    const double v = number(path_of(key), required_node(key));
    check_ratio(path_of(key), v);
    return v;
  }

  // 24 numbers (an hourly curve), each >= 0 and, for ratios, <= 1.
  Hourly curve(std::string_view key, bool ratio_values) {
    const YAML::Node n = required_node(key);
    if (!n.IsSequence() || n.size() != kHours)
      fail(path_of(key), fmt::format("needs {} hourly entries, got {}", kHours, n.IsSequence() ? std::to_string(n.size()) : "a non-list"));
    Hourly out{};
    for (int h = 0; h < kHours; ++h) {
      const std::string at = fmt::format("{}[{}]", path_of(key), h);
      out[h] = number(at, n[h]);
      if (ratio_values)
        check_ratio(at, out[h]);
      else
        check_rate(at, out[h], false);
    }
    return out;
  }

  // A ratio given once for the whole day or as 24 hourly values.
  Hourly ratio_or_curve(std::string_view key) {
    if (has(key) && map_[std::string(key)].IsSequence()) return curve(key, true);
    Hourly out{};
    out.fill(ratio(key));
    return out;
  }

  std::string text(std::string_view key, std::string fallback) {
    if (!has(key)) return fallback;
    const YAML::Node n = node(key);
    if (!n.IsScalar()) fail(path_of(key), "expected text");
    return n.Scalar();
  }

  std::string choice(std::string_view key, std::string fallback, const std::vector<std::string>& allowed) {
    std::string v = text(key, std::move(fallback));
    for (const auto& a : allowed)
      if (v == a) return v;
    fail(path_of(key), fmt::format("'{}' is not one of: {}", v, fmt::join(allowed, ", ")));
  }

  bool flag(std::string_view key, bool fallback) {
    const std::string v = text(key, fallback ? "true" : "false");
    if (v == "true") return true;
    if (v == "false") return false;
    fail(path_of(key), fmt::format("expected true or false, got '{}'", v));
  }

  // Call when done: any key not read is unknown.
  void finish() const {
    for (auto it = map_.begin(); it != map_.end(); ++it) {
      const std::string key = it->first.Scalar();
      if (!used_.count(key)) fail(path_of(key), "unknown field (see docs/cost.md for the schema)");
    }
  }

  // Exactly one of `a` and `b` present; returns true for `a`.
  bool one_of(std::string_view a, std::string_view b) const {
    if (has(a) == has(b))
      fail(here(), fmt::format("needs exactly one of {} and {}", path_of(a), path_of(b)));
    return has(a);
  }

 private:
  void check_ratio(const std::string& at, double v) const {
    if (v < 0 || v > 1) fail(at, fmt::format("must be in [0, 1], got {}", v));
  }
  void check_rate(const std::string& at, double v, bool positive) const {
    if (v < 0 || (positive && v == 0)) fail(at, fmt::format("must be {} 0, got {}", positive ? ">" : ">=", v));
  }

  YAML::Node map_;
  std::string path_;
  std::string_view origin_;
  std::set<std::string> used_;
};

// demand.daily: volumes for the day spread over the hours by a relative shape (flat if absent).
void read_daily(FieldReader daily, Load& load) {
  const double input = daily.rate("input_tokens");
  const double output = daily.rate("output_tokens");
  double hit_ratio = 0;
  if (daily.one_of("cache_hit_tokens", "cache_hit_ratio")) {
    const double hits = daily.rate("cache_hit_tokens");
    if (hits > input)
      daily.fail(daily.path_of("cache_hit_tokens"), fmt::format("{} is more than input_tokens {}", hits, input));
    hit_ratio = input > 0 ? hits / input : 0;
  } else {
    hit_ratio = daily.ratio("cache_hit_ratio");
  }
  Hourly shape{};
  shape.fill(1.0);
  if (daily.has("hourly_shape")) shape = daily.curve("hourly_shape", false);
  double total = 0;
  for (double s : shape) total += s;
  if (total <= 0) daily.fail(daily.path_of("hourly_shape"), "is zero every hour");
  for (int h = 0; h < kHours; ++h) {
    load.input_tokens_per_s[h] = input * shape[h] / total / 3600.0;
    load.output_tokens_per_s[h] = output * shape[h] / total / 3600.0;
    load.cache_hit_ratio[h] = hit_ratio;
  }
  daily.finish();
}

// demand.hourly: tokens/s per hour, or requests/s per hour with tokens per request.
void read_hourly(FieldReader hourly, Load& load) {
  load.cache_hit_ratio = hourly.ratio_or_curve("cache_hit_ratio");
  if (hourly.one_of("input_tokens_per_s", "requests_per_s")) {
    load.input_tokens_per_s = hourly.curve("input_tokens_per_s", false);
    load.output_tokens_per_s = hourly.curve("output_tokens_per_s", false);
  } else {
    const Hourly requests = hourly.curve("requests_per_s", false);
    const double in = hourly.rate("input_tokens_per_request"), out = hourly.rate("output_tokens_per_request");
    for (int h = 0; h < kHours; ++h) {
      load.input_tokens_per_s[h] = requests[h] * in;
      load.output_tokens_per_s[h] = requests[h] * out;
    }
  }
  hourly.finish();
}

Scenario read_scenario(FieldReader root) {
  Scenario s;
  s.name = root.text("name", "scenario");

  FieldReader demand = root.child("demand");
  if (demand.one_of("daily", "hourly"))
    read_daily(demand.child("daily"), s.load);
  else
    read_hourly(demand.child("hourly"), s.load);
  if (demand.has("output_speed_tokens_per_s")) s.load.output_speed_tokens_per_s = demand.rate("output_speed_tokens_per_s", true);
  demand.finish();

  FieldReader node = root.child("node");
  if (node.has("prefill_tokens_per_s")) s.node.prefill_tokens_per_s = node.rate("prefill_tokens_per_s", true);
  if (node.has("decode_tokens_per_s")) s.node.decode_tokens_per_s = node.rate("decode_tokens_per_s", true);
  s.node.prefill_basis = node.choice("prefill_counts", "input", {"input", "cache_miss"}) == "input"
                             ? PrefillBasis::kInput
                             : PrefillBasis::kCacheMiss;
  const bool per_gpu = node.one_of("price_per_gpu_hour", "price_per_node_hour");
  if (per_gpu || node.has("gpus")) {
    const double gpus = node.rate("gpus", true);
    if (gpus != std::floor(gpus)) node.fail(node.path_of("gpus"), fmt::format("must be a whole number, got {}", gpus));
    s.node.gpus = static_cast<int64_t>(gpus);
  }
  s.node.price_per_hour = per_gpu ? static_cast<double>(s.node.gpus) * node.rate("price_per_gpu_hour", true)
                                  : node.rate("price_per_node_hour", true);
  node.finish();

  FieldReader prices = root.child("prices");
  s.prices.input_cache_hit = prices.rate("input_cache_hit");
  s.prices.input_cache_miss = prices.rate("input_cache_miss");
  s.prices.output = prices.rate("output");
  prices.finish();

  if (root.has("scaling")) {
    FieldReader scaling = root.child("scaling");
    s.scaling.policy = scaling.choice("policy", "autoscale", {"autoscale", "static"}) == "static" ? Policy::kStatic : Policy::kAutoscale;
    s.scaling.whole_nodes = scaling.flag("whole_nodes", true);
    s.scaling.headroom = scaling.rate_or("headroom", 0);
    s.scaling.min_prefill_nodes = scaling.rate_or("min_prefill_nodes", 0);
    s.scaling.min_decode_nodes = scaling.rate_or("min_decode_nodes", 0);
    s.scaling.scale_up_lag_hours = scaling.rate_or("scale_up_lag_hours", 0);
    if (s.scaling.scale_up_lag_hours > kHours)
      scaling.fail(scaling.path_of("scale_up_lag_hours"), fmt::format("must be at most {}, got {}", kHours, s.scaling.scale_up_lag_hours));
    scaling.finish();
  }
  root.finish();
  return s;
}

}  // namespace

Scenario parse_scenario(std::string_view text, std::string_view origin) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    raise(ErrorKind::kInvalidArgument, "{}: line {}, column {}: not valid YAML: {}", origin, e.mark.line + 1,
          e.mark.column + 1, e.msg);
  }
  if (!root.IsDefined() || root.IsNull()) raise(ErrorKind::kInvalidArgument, "{}: the file is empty", origin);
  return read_scenario(FieldReader(root, "", origin));
}

Scenario load_scenario(const std::string& path) { return parse_scenario(read_text_file(path), path); }

}  // namespace cachalot::cost
