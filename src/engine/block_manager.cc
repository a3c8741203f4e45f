#include "engine/block_manager.h"

#include <algorithm>

#include "core/error.h"

namespace cachalot::engine {

BlockManager::BlockManager(int64_t num_blocks) : blocks_(static_cast<std::size_t>(num_blocks)) {
  CACHALOT_CHECK_ARG(num_blocks > 0, "the KV cache needs at least one block, got {}", num_blocks);
  free_.reserve(blocks_.size());
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

uint64_t BlockManager::chain_hash(uint64_t parent, std::span<const int32_t> tokens) {
  // FNV-1a over the parent hash and the token ids, then a final mix (splitmix64's): collisions
  // are checked against the stored tokens anyway, so speed matters more than strength.
  uint64_t h = 1469598103934665603ull ^ parent;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xFF;
      h *= 1099511628211ull;
    }
  };
  mix(parent);
  for (int32_t t : tokens) mix(static_cast<uint32_t>(t));
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

void BlockManager::acquire(int32_t b) {
  Block& block = blocks_[b];
  if (block.refs++ == 0) {
    if (block.registered) lru_.erase(block.lru_pos);
    ++in_use_;
  }
}

std::vector<int32_t> BlockManager::match_prefix(std::span<const int32_t> tokens, std::vector<uint64_t>& hashes) {
  std::vector<int32_t> matched;
  hashes.clear();
  if (tokens.empty()) return matched;
  const std::size_t full = (tokens.size() - 1) / kBlockTokens;  // keep the last token to compute
  uint64_t parent = 0;
  for (std::size_t i = 0; i < full; ++i) {
    const auto block_tokens = tokens.subspan(i * kBlockTokens, kBlockTokens);
    const uint64_t h = chain_hash(parent, block_tokens);
    const auto it = by_hash_.find(h);
    if (it == by_hash_.end()) break;
    const Block& candidate = blocks_[it->second];
    if (candidate.parent_hash != parent || !std::equal(block_tokens.begin(), block_tokens.end(), candidate.tokens.begin())) break;
    acquire(it->second);
    matched.push_back(it->second);
    hashes.push_back(h);
    parent = h;
  }
  return matched;
}

std::optional<int32_t> BlockManager::allocate() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    b = lru_.front();
    lru_.pop_front();
    Block& evicted = blocks_[b];
    by_hash_.erase(evicted.hash);
    evicted.registered = false;
    evicted.tokens.clear();
  } else {
    return std::nullopt;
  }
  blocks_[b].refs = 1;
  ++in_use_;
  return b;
}

uint64_t BlockManager::commit(int32_t b, uint64_t parent_hash, std::span<const int32_t> block_tokens) {
  CACHALOT_ASSERT(static_cast<int>(block_tokens.size()) == kBlockTokens && blocks_[b].refs > 0);
  const uint64_t h = chain_hash(parent_hash, block_tokens);
  Block& block = blocks_[b];
  if (block.registered || by_hash_.count(h)) return h;
  block.registered = true;
  block.hash = h;
  block.parent_hash = parent_hash;
  block.tokens.assign(block_tokens.begin(), block_tokens.end());
  by_hash_.emplace(h, b);
  return h;
}

void BlockManager::release(std::span<const int32_t> blocks) {
  for (int32_t b : blocks) {
    Block& block = blocks_[b];
    CACHALOT_ASSERT(block.refs > 0);
    if (--block.refs > 0) continue;
    --in_use_;
    if (block.registered) {
      lru_.push_back(b);
      block.lru_pos = std::prev(lru_.end());
    } else {
      free_.push_back(b);
    }
  }
}

void BlockManager::check_invariants() const {
  int64_t used = 0, registered = 0;
  std::vector<int> seen(blocks_.size(), 0);
  for (std::size_t b = 0; b < blocks_.size(); ++b) {
    const Block& block = blocks_[b];
    CACHALOT_ASSERT(block.refs >= 0);
    used += block.refs > 0;
    if (block.registered) {
      ++registered;
      const auto it = by_hash_.find(block.hash);
      CACHALOT_ASSERT(it != by_hash_.end() && it->second == static_cast<int32_t>(b));
      CACHALOT_ASSERT(static_cast<int>(block.tokens.size()) == kBlockTokens);
    }
  }
  for (int32_t b : free_) {
    CACHALOT_ASSERT(blocks_[b].refs == 0 && !blocks_[b].registered);
    ++seen[b];
  }
  for (int32_t b : lru_) {
    CACHALOT_ASSERT(blocks_[b].refs == 0 && blocks_[b].registered);
    ++seen[b];
  }
  for (std::size_t b = 0; b < blocks_.size(); ++b) CACHALOT_ASSERT(seen[b] == (blocks_[b].refs == 0 ? 1 : 0));
  CACHALOT_ASSERT(used == in_use_);
  CACHALOT_ASSERT(registered == static_cast<int64_t>(by_hash_.size()));
}

}  // namespace cachalot::engine
