// Added tokens (specials such as <｜User｜>, tool-call markers): found in the raw text before
// pre-tokenization, leftmost first and longest at a position, and encoded as their single id.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cachalot::tokenizer {

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;  // skipped by decode(skip_special_tokens)
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  explicit AddedVocabulary(std::vector<AddedToken> tokens);

  // A run of text between added tokens (id < 0), or one added token (id >= 0).
  struct Segment {
    std::string_view text;
    int32_t id;
  };
  // Cuts text into segments; empty text runs are left out.
  void split(std::string_view text, std::vector<Segment>& out) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // A byte trie over the contents: node 0 is the root; `token` is the index into tokens_ of the
  // content ending at that node, or -1.
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t token = -1;
  };
  int32_t child(int32_t node, unsigned char byte) const;
  // Length of the longest content starting at text[pos], and its token index (or 0, -1).
  std::pair<std::size_t, int32_t> longest_match(std::string_view text, std::size_t pos) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;
  bool first_byte_[256] = {};
};

}  // namespace cachalot::tokenizer
