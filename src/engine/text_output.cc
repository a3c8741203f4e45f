#include "engine/text_output.h"

#include <algorithm>

namespace cachalot::engine {

TextOutput::TextOutput(const tokenizer::Tokenizer* tokenizer, std::vector<std::string> stop) : stop_(std::move(stop)) {
  if (tokenizer) decoder_.emplace(*tokenizer);
  std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
  for (const auto& s : stop_) longest_stop_ = std::max(longest_stop_, s.size());
}

std::string TextOutput::push(int32_t token) {
  if (!decoder_ || stopped_) return {};
  pending_ += decoder_->push(token);
  // The earliest stop string in what is pending (text before pending_ was checked already and
  // cannot begin a stop string, or it would have been held back).
  std::size_t first = std::string::npos;
  for (const auto& s : stop_) first = std::min(first, pending_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, first);
    pending_.clear();
    return out;
  }
  // Hold back the longest suffix that is a prefix of some stop string, cut on a character
  // boundary (stop strings are whole UTF-8).
  std::size_t keep = 0;
  for (const auto& s : stop_) {
    for (std::size_t n = std::min(s.size() - 1, pending_.size()); n > keep; --n) {
      if (pending_.compare(pending_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string TextOutput::finish() {
  if (!decoder_ || stopped_) return {};
  std::string out = pending_ + decoder_->finish();
  pending_.clear();
  return out;
}

}  // namespace cachalot::engine
