#include "engine/block_manager.h"

#include <algorithm>

#include "core/error.h"

namespace cachalot::engine {

BlockManager::BlockManager(int64_t num_blocks, int64_t partitions)
    : blocks_(static_cast<std::size_t>(std::max<int64_t>(num_blocks, 0))) {
  CACHALOT_CHECK_ARG(partitions >= 1 && num_blocks >= partitions && num_blocks % partitions == 0,
                     "the KV cache needs at least one block per attention rank and an equal number each: {} blocks "
                     "over {} ranks",
                     num_blocks, partitions);
  parts_.resize(static_cast<size_t>(partitions));
  for (int64_t b = num_blocks - 1; b >= 0; --b) part_of(static_cast<int32_t>(b)).free.push_back(static_cast<int32_t>(b));
}

int64_t BlockManager::cached() const {
  int64_t n = 0;
  for (const Partition& p : parts_) n += static_cast<int64_t>(p.lru.size());
  return n;
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
    Partition& p = part_of(b);
    if (block.registered) p.lru.erase(block.lru_pos);
    ++p.in_use;
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
    if (!matched.empty() && partition_of(it->second) != partition_of(matched[0])) break;
    const Block& candidate = blocks_[it->second];
    if (candidate.parent_hash != parent || !std::equal(block_tokens.begin(), block_tokens.end(), candidate.tokens.begin())) break;
    acquire(it->second);
    matched.push_back(it->second);
    hashes.push_back(h);
    parent = h;
  }
  return matched;
}

std::optional<int32_t> BlockManager::allocate(int64_t partition) {
  CACHALOT_ASSERT(partition >= 0 && partition < partitions());
  Partition& p = parts_[static_cast<size_t>(partition)];
  int32_t b;
  if (!p.free.empty()) {
    b = p.free.back();
    p.free.pop_back();
  } else if (!p.lru.empty()) {
    b = p.lru.front();
    p.lru.pop_front();
    Block& evicted = blocks_[b];
    by_hash_.erase(evicted.hash);
    evicted.registered = false;
    evicted.tokens.clear();
  } else {
    return std::nullopt;
  }
  blocks_[b].refs = 1;
  ++p.in_use;
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
    Partition& p = part_of(b);
    --p.in_use;
    --in_use_;
    if (block.registered) {
      p.lru.push_back(b);
      block.lru_pos = std::prev(p.lru.end());
    } else {
      p.free.push_back(b);
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
  int64_t used_in_parts = 0;
  for (int64_t p = 0; p < partitions(); ++p) {
    const Partition& part = parts_[static_cast<size_t>(p)];
    for (int32_t b : part.free) {
      CACHALOT_ASSERT(blocks_[b].refs == 0 && !blocks_[b].registered && partition_of(b) == p);
      ++seen[b];
    }
    for (int32_t b : part.lru) {
      CACHALOT_ASSERT(blocks_[b].refs == 0 && blocks_[b].registered && partition_of(b) == p);
      ++seen[b];
    }
    CACHALOT_ASSERT(part.in_use == blocks_per_partition() - static_cast<int64_t>(part.free.size() + part.lru.size()));
    used_in_parts += part.in_use;
  }
  for (std::size_t b = 0; b < blocks_.size(); ++b) CACHALOT_ASSERT(seen[b] == (blocks_[b].refs == 0 ? 1 : 0));
  CACHALOT_ASSERT(used == in_use_ && used_in_parts == in_use_);
  CACHALOT_ASSERT(registered == static_cast<int64_t>(by_hash_.size()));
}

}  // namespace cachalot::engine
