#include "tokenizer/added_vocabulary.h"

#include <algorithm>

namespace cachalot::tokenizer {

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  nodes_.emplace_back();
  for (std::size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& content = tokens_[t].content;
    if (content.empty()) continue;
    first_byte_[static_cast<unsigned char>(content[0])] = true;
    int32_t node = 0;
    for (unsigned char byte : content) {
      int32_t next = child(node, byte);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.emplace_back(byte, next);
        nodes_.emplace_back();
      }
      node = next;
    }
    nodes_[node].token = static_cast<int32_t>(t);
  }
}

int32_t AddedVocabulary::child(int32_t node, unsigned char byte) const {
  for (const auto& [b, next] : nodes_[node].children)
    if (b == byte) return next;
  return -1;
}

std::pair<std::size_t, int32_t> AddedVocabulary::longest_match(std::string_view text, std::size_t pos) const {
  std::pair<std::size_t, int32_t> best{0, -1};
  int32_t node = 0;
  for (std::size_t i = pos; i < text.size(); ++i) {
    node = child(node, static_cast<unsigned char>(text[i]));
    if (node < 0) break;
    if (nodes_[node].token >= 0) best = {i + 1 - pos, nodes_[node].token};
  }
  return best;
}

void AddedVocabulary::split(std::string_view text, std::vector<Segment>& out) const {
  std::size_t run_start = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    const auto [length, token] = longest_match(text, pos);
    if (token < 0) {
      ++pos;
      continue;
    }
    if (pos > run_start) out.push_back({text.substr(run_start, pos - run_start), -1});
    out.push_back({text.substr(pos, length), tokens_[token].id});
    pos += length;
    run_start = pos;
  }
  if (run_start < text.size()) out.push_back({text.substr(run_start), -1});
}

}  // namespace cachalot::tokenizer
