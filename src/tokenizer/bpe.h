// Byte-level BPE: a word's bytes start as one symbol each (the vocabulary id of the byte's
// character) and the adjacent pair with the lowest merge rank is merged until none is left,
// leftmost first among equal ranks, exactly as the HF tokenizers' BPE model does. A heap of
// candidate pairs over a linked list of symbols keeps long words O(n log n); results of short
// words are cached because text repeats its words.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cachalot::tokenizer {

class Bpe {
 public:
  // vocab[id] is the token in the byte-level alphabet (empty where an id is unused); merges are
  // pairs of tokens in rank order. Throws Error(kCorruptData) naming a merge whose parts or result
  // are not in the vocabulary, or a byte with no token.
  Bpe(std::vector<std::string> vocab, const std::vector<std::pair<std::string, std::string>>& merges);

  // Appends the ids of one pre-tokenized piece (raw bytes, not byte-level text).
  void encode_word(std::string_view bytes, std::vector<int32_t>& out) const;

  // Token string of an id in the byte-level alphabet; empty if the id is not in the vocabulary.
  const std::string& token(int32_t id) const;
  std::size_t size() const { return vocab_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  void merge_symbols(std::string_view bytes, std::vector<int32_t>& out) const;

  std::vector<std::string> vocab_;
  std::unordered_map<uint64_t, Merge> merges_;  // key: left id << 32 | right id
  int32_t byte_ids_[256];

  // Word cache: guarded by a mutex (the server encodes from several threads); it stops growing
  // at kCacheCapacity entries rather than evicting, as the HF implementation does.
  static constexpr std::size_t kCacheCapacity = 1 << 17;
  static constexpr std::size_t kMaxCachedWordBytes = 256;
  mutable std::unique_ptr<std::mutex> cache_mutex_ = std::make_unique<std::mutex>();
  // Looked up by string_view (transparent hash): a hit allocates nothing.
  struct WordHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::unordered_map<std::string, std::vector<int32_t>, WordHash, std::equal_to<>> cache_;
};

}  // namespace cachalot::tokenizer
