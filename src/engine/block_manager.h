// The KV block manager: a pool of fixed-size blocks (64 tokens, the model's KV page) handed to
// sequences, with prefix caching. A block whose tokens are all computed is registered under the
// hash of the whole token prefix through it (a chain: hash(parent block's hash, own tokens)), so
// a later request with the same prefix reuses the block instead of recomputing it. Blocks are
// reference counted; a registered block nobody uses stays cached in LRU order until a fresh
// block is needed and it is evicted.
//
// The pool may be split into equal partitions (block ids [p * n/P, (p+1) * n/P)): one per
// attention rank when expert-parallel ranks are processes, each holding its own range of the KV
// cache. A sequence then takes all its blocks from one partition, and a matched prefix never
// crosses one.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace cachalot::engine {

class BlockManager {
 public:
  static constexpr int kBlockTokens = 64;
  // Blocks that hold `tokens` tokens.
  static int64_t blocks_for(int64_t tokens) { return (tokens + kBlockTokens - 1) / kBlockTokens; }

  explicit BlockManager(int64_t num_blocks, int64_t partitions = 1);

  // The longest run of cached full blocks that prefixes `tokens`, leaving at least the last token
  // to compute (its logits are needed), all in the first block's partition. The blocks are
  // acquired (refcount + 1); `hashes` receives their chain hashes.
  std::vector<int32_t> match_prefix(std::span<const int32_t> tokens, std::vector<uint64_t>& hashes);

  // A fresh block (refcount 1) of `partition`: a never-used one, else the least recently used
  // cached one (dropped from the cache). nullopt when every block of the partition is in use.
  std::optional<int32_t> allocate(int64_t partition = 0);

  // Registers a full block's contents for reuse; returns its chain hash. If another block already
  // holds this prefix, that one stays registered and this one will simply be freed on release.
  uint64_t commit(int32_t block, uint64_t parent_hash, std::span<const int32_t> block_tokens);

  // Drops one reference from each block; blocks nobody uses become cached (if registered) or free.
  void release(std::span<const int32_t> blocks);

  int64_t total() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t partitions() const { return static_cast<int64_t>(parts_.size()); }
  int64_t blocks_per_partition() const { return total() / partitions(); }
  int64_t partition_of(int32_t block) const { return block / blocks_per_partition(); }
  int64_t in_use() const { return in_use_; }
  int64_t cached() const;
  // Blocks allocate() can still hand out (free + evictable cached ones), in all partitions or one.
  int64_t available() const { return total() - in_use_; }
  int64_t available(int64_t partition) const { return blocks_per_partition() - parts_[partition].in_use; }

  // Checks every invariant (refcounts against the lists, hash map against blocks); throws
  // Error(kInternal) on a violation. For tests.
  void check_invariants() const;

 private:
  struct Block {
    int32_t refs = 0;
    bool registered = false;
    uint64_t hash = 0, parent_hash = 0;
    std::vector<int32_t> tokens;           // kept to rule out hash collisions
    std::list<int32_t>::iterator lru_pos;  // valid while cached
  };
  static uint64_t chain_hash(uint64_t parent, std::span<const int32_t> tokens);
  void acquire(int32_t block);

  struct Partition {
    std::vector<int32_t> free;  // never registered (or unregistered) and unused
    std::list<int32_t> lru;     // registered, unused: front is the least recently used
    int64_t in_use = 0;
  };
  Partition& part_of(int32_t block) { return parts_[static_cast<size_t>(partition_of(block))]; }

  std::vector<Block> blocks_;
  std::vector<Partition> parts_;
  std::unordered_map<uint64_t, int32_t> by_hash_;
  int64_t in_use_ = 0;
};

}  // namespace cachalot::engine
