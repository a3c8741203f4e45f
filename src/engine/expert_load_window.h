// Tokens per logical expert and MoE layer over the last N engine steps (a sliding window): the
// loads EPLB places the experts by. Engine thread only.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

namespace cachalot::engine {

class ExpertLoadWindow {
 public:
  explicit ExpertLoadWindow(int64_t steps) : steps_(steps) {}

  // One forward's counts: [MoE layer][expert] (model::ForwardOutput::expert_tokens).
  void add(const std::vector<std::vector<int64_t>>& step);
  // Sums over the window, [layers][experts] row-major; empty before the first step.
  std::vector<float> totals() const;
  int64_t layers() const { return static_cast<int64_t>(sum_.size()); }
  int64_t experts() const { return sum_.empty() ? 0 : static_cast<int64_t>(sum_[0].size()); }
  int64_t steps() const { return static_cast<int64_t>(history_.size()); }

 private:
  int64_t steps_;
  std::deque<std::vector<std::vector<int64_t>>> history_;
  std::vector<std::vector<int64_t>> sum_;
};

}  // namespace cachalot::engine
