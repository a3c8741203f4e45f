#include "tokenizer/bpe.h"

#include <queue>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace cachalot::tokenizer {
namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

Bpe::Bpe(std::vector<std::string> vocab, const std::vector<std::pair<std::string, std::string>>& merges)
    : vocab_(std::move(vocab)) {
  std::unordered_map<std::string_view, int32_t> ids;
  ids.reserve(vocab_.size());
  for (std::size_t id = 0; id < vocab_.size(); ++id)
    if (!vocab_[id].empty()) ids.emplace(vocab_[id], static_cast<int32_t>(id));
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    utf8::append_code_point(ch, byte_level::byte_to_code_point(static_cast<unsigned char>(b)));
    const auto it = ids.find(ch);
    if (it == ids.end()) raise(ErrorKind::kCorruptData, "tokenizer.json: no vocabulary entry for byte 0x{:02X} ('{}')", b, ch);
    byte_ids_[b] = it->second;
  }
  merges_.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto l = ids.find(left), r = ids.find(right), m = ids.find(left + right);
    if (l == ids.end() || r == ids.end() || m == ids.end()) {
      raise(ErrorKind::kCorruptData, "tokenizer.json: merge {} '{} {}' uses a token that is not in the vocabulary",
            rank, left, right);
    }
    // A repeated pair keeps its first (lowest) rank.
    merges_.emplace(pair_key(l->second, r->second), Merge{static_cast<int32_t>(rank), m->second});
  }
}

const std::string& Bpe::token(int32_t id) const {
  static const std::string empty;
  return id >= 0 && static_cast<std::size_t>(id) < vocab_.size() ? vocab_[id] : empty;
}

void Bpe::encode_word(std::string_view bytes, std::vector<int32_t>& out) const {
  if (bytes.empty()) return;
  if (bytes.size() == 1) {
    out.push_back(byte_ids_[static_cast<unsigned char>(bytes[0])]);
    return;
  }
  const bool cacheable = bytes.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard lock(*cache_mutex_);
    const auto it = cache_.find(bytes);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const std::size_t first = out.size();
  merge_symbols(bytes, out);
  if (cacheable) {
    std::lock_guard lock(*cache_mutex_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::string(bytes), std::vector<int32_t>(out.begin() + first, out.end()));
  }
}

void Bpe::merge_symbols(std::string_view bytes, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // neighbours in the list, -1 at the ends
  };
  struct Candidate {
    int32_t rank, left, right, left_id, right_id, result;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  const auto n = static_cast<int32_t>(bytes.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) symbols[i] = {byte_ids_[static_cast<unsigned char>(bytes[i])], i - 1, i + 1 < n ? i + 1 : -1};

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push_pair = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
    if (it != merges_.end())
      heap.push({it->second.rank, left, right, symbols[left].id, symbols[right].id, it->second.result});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i, i + 1);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = symbols[c.left];
    // Stale candidates (a side was merged away or changed since the push) are skipped.
    if (left.id != c.left_id || left.next != c.right || symbols[c.right].id != c.right_id) continue;
    Symbol& right = symbols[c.right];
    left.id = c.result;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.id = -1;  // dead
    push_pair(left.prev, c.left);
    push_pair(c.left, left.next);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace cachalot::tokenizer
