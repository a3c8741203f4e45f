// The tiny-dsv3 fixture's golden.json (float64 reference outputs), parsed for the model tests.
#pragma once

#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cachalot::model::testing {

struct GoldenCase {
  std::vector<int32_t> prompt;
  std::vector<std::vector<double>> prefill_logits;  // [position][vocab]
  std::vector<int32_t> greedy;                      // the next 12 tokens
  std::vector<double> margins;
  std::map<int, std::vector<std::vector<int32_t>>> routing;  // layer -> [position][k]
};

inline std::vector<GoldenCase> load_golden(const std::string& model_dir) {
  std::ifstream in(model_dir + "/golden.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  std::vector<GoldenCase> cases;
  for (const auto& c : j.at("cases")) {
    GoldenCase g;
    g.prompt = c.at("prompt").get<std::vector<int32_t>>();
    g.prefill_logits = c.at("prefill_logits").get<std::vector<std::vector<double>>>();
    g.greedy = c.at("greedy_continuation").get<std::vector<int32_t>>();
    g.margins = c.at("greedy_margins").get<std::vector<double>>();
    for (const auto& [layer, rows] : c.at("routing").items())
      g.routing[std::stoi(layer)] = rows.get<std::vector<std::vector<int32_t>>>();
    cases.push_back(std::move(g));
  }
  return cases;
}

inline int32_t argmax(const float* v, int64_t n) {
  int32_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = static_cast<int32_t>(i);
  return best;
}

inline int32_t argmax(const std::vector<double>& v) {
  int32_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = static_cast<int32_t>(i);
  return best;
}

inline double cosine(const float* a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < b.size(); ++i) ab += a[i] * b[i], aa += double(a[i]) * a[i], bb += b[i] * b[i];
  return ab / std::sqrt(aa * bb);
}

}  // namespace cachalot::model::testing
