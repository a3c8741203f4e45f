#include "engine/expert_load_window.h"

#include "core/error.h"

namespace cachalot::engine {

void ExpertLoadWindow::add(const std::vector<std::vector<int64_t>>& step) {
  if (step.empty() || steps_ <= 0) return;
  if (sum_.empty()) sum_.assign(step.size(), std::vector<int64_t>(step[0].size(), 0));
  CACHALOT_ASSERT(step.size() == sum_.size());
  for (size_t l = 0; l < step.size(); ++l) {
    CACHALOT_ASSERT(step[l].size() == sum_[l].size());
    for (size_t e = 0; e < step[l].size(); ++e) sum_[l][e] += step[l][e];
  }
  history_.push_back(step);
  if (static_cast<int64_t>(history_.size()) > steps_) {
    const auto& old = history_.front();
    for (size_t l = 0; l < old.size(); ++l)
      for (size_t e = 0; e < old[l].size(); ++e) sum_[l][e] -= old[l][e];
    history_.pop_front();
  }
}

std::vector<float> ExpertLoadWindow::totals() const {
  std::vector<float> out;
  for (const auto& layer : sum_)
    for (const int64_t v : layer) out.push_back(static_cast<float>(v));
  return out;
}

}  // namespace cachalot::engine
