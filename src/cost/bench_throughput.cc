#include "cost/bench_throughput.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace cachalot::cost {
namespace {

struct Best {
  double value = 0;
  std::string case_name;
  bool found = false;
  void offer(double v, const std::string& name) {
    if (found && v <= value) return;
    value = v;
    case_name = name;
    found = true;
  }
};

}  // namespace

BenchThroughput parse_bench_throughput(std::string_view text, std::string_view origin) {
  Best model_prefill, model_decode, serve_prefill, serve_decode;
  size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
      raise(ErrorKind::kInvalidArgument, "{} line {}: not a JSON object (run the benchmark with --json)", origin, line_no);
    const std::string bench = j.value("bench", ""), metric = j.value("metric", ""), name = j.value("case", "");
    if (!j.contains("value") || !j["value"].is_number()) continue;
    const double value = j["value"].get<double>();
    if (!(value > 0)) continue;
    if (bench == "model" && metric == "prefill_throughput") model_prefill.offer(value, name);
    if (bench == "model" && metric == "decode_throughput") model_decode.offer(value, name);
    // Only the saturated run says what a node can carry; paced runs carry what was offered.
    if (bench == "serve" && name.find("rate=max") != std::string::npos) {
      if (metric == "input_throughput") serve_prefill.offer(value, name);
      if (metric == "output_throughput") serve_decode.offer(value, name);
    }
  }
  BenchThroughput out;
  if (model_prefill.found) {
    out.prefill_tokens_per_s = model_prefill.value;
    out.prefill_case = "bench model: " + model_prefill.case_name;
    out.prefill_basis = PrefillBasis::kCacheMiss;
  } else if (serve_prefill.found) {
    out.prefill_tokens_per_s = serve_prefill.value;
    out.prefill_case = "bench serve: " + serve_prefill.case_name;
    out.prefill_basis = PrefillBasis::kInput;  // the server's prompt tokens include cache hits
  }
  const Best& decode = model_decode.found ? model_decode : serve_decode;
  if (decode.found) {
    out.decode_tokens_per_s = decode.value;
    out.decode_case = (model_decode.found ? "bench model: " : "bench serve: ") + decode.case_name;
  }
  if (!out.prefill_tokens_per_s && !out.decode_tokens_per_s)
    raise(ErrorKind::kInvalidArgument,
          "{}: no prefill or decode throughput in it (expected the output of `cachalot bench model --json` or "
          "`cachalot bench serve --json`)",
          origin);
  return out;
}

void apply_bench_throughput(Scenario& scenario, const BenchThroughput& bench) {
  if (bench.prefill_tokens_per_s) {
    scenario.node.prefill_tokens_per_s = bench.prefill_tokens_per_s;
    scenario.node.prefill_basis = bench.prefill_basis;
  }
  if (bench.decode_tokens_per_s) scenario.node.decode_tokens_per_s = bench.decode_tokens_per_s;
}

}  // namespace cachalot::cost
