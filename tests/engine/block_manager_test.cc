#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "engine/block_manager.h"

namespace cachalot::engine {
namespace {

std::vector<int32_t> tokens_of(int blocks, int seed) {
  std::vector<int32_t> t(static_cast<std::size_t>(blocks * BlockManager::kBlockTokens + 1));
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>((i * 7 + static_cast<std::size_t>(seed)) % 1000);
  return t;
}

// Allocates blocks for `tokens`, reusing its cached prefix, and commits every full block. Fresh
// blocks come from the prefix's partition, else from `partition`.
std::vector<int32_t> fill(BlockManager& bm, const std::vector<int32_t>& tokens, std::size_t* reused = nullptr,
                          int64_t partition = 0) {
  std::vector<uint64_t> hashes;
  std::vector<int32_t> blocks = bm.match_prefix(tokens, hashes);
  if (reused) *reused = blocks.size();
  if (!blocks.empty()) partition = bm.partition_of(blocks[0]);
  const std::size_t full = tokens.size() / BlockManager::kBlockTokens;
  while (blocks.size() < full) {
    const auto b = bm.allocate(partition);
    if (!b) break;
    blocks.push_back(*b);
  }
  for (std::size_t i = hashes.size(); i < blocks.size(); ++i) {
    hashes.push_back(bm.commit(blocks[i], i ? hashes[i - 1] : 0,
                               std::span<const int32_t>(tokens).subspan(i * BlockManager::kBlockTokens, BlockManager::kBlockTokens)));
  }
  return blocks;
}

TEST(BlockManager, ReusesACommittedPrefixAndLeavesTheLastTokenToCompute) {
  BlockManager bm(8);
  const auto tokens = tokens_of(3, 1);  // 3 full blocks + 1 token
  const auto first = fill(bm, tokens);
  ASSERT_EQ(first.size(), 3u);
  bm.release(first);
  EXPECT_EQ(bm.cached(), 3);
  EXPECT_EQ(bm.in_use(), 0);
  std::size_t reused = 0;
  const auto second = fill(bm, tokens, &reused);
  EXPECT_EQ(reused, 3u);
  EXPECT_EQ(second, first);
  // Exactly 3 full blocks and no extra token: the last block must be recomputed for its logits.
  std::vector<int32_t> exact(tokens.begin(), tokens.begin() + 3 * BlockManager::kBlockTokens);
  std::vector<uint64_t> hashes;
  const auto matched = bm.match_prefix(exact, hashes);
  EXPECT_EQ(matched.size(), 2u);
  bm.release(matched);
  bm.release(second);
  // A different first block shares nothing, even with the same later blocks.
  auto other = tokens;
  other[0] += 1;
  EXPECT_TRUE(bm.match_prefix(other, hashes).empty());
  bm.check_invariants();
}

TEST(BlockManager, EvictsTheLeastRecentlyUsedCachedBlockWhenFull) {
  BlockManager bm(4);
  const auto a = fill(bm, tokens_of(2, 1));
  const auto b = fill(bm, tokens_of(2, 2));
  bm.release(a);  // a's blocks become cached first (older)
  bm.release(b);
  EXPECT_EQ(bm.available(), 4);
  const auto fresh = bm.allocate();  // evicts a's first block
  ASSERT_TRUE(fresh.has_value());
  EXPECT_EQ(*fresh, a[0]);
  std::vector<uint64_t> hashes;
  EXPECT_TRUE(bm.match_prefix(tokens_of(2, 1), hashes).empty());  // chain broken at block 0
  EXPECT_EQ(bm.match_prefix(tokens_of(2, 2), hashes).size(), 2u);
  bm.check_invariants();
}

TEST(BlockManager, InvariantsHoldUnderRandomOperations) {
  std::mt19937 rng(3);
  BlockManager bm(32, 2);
  std::vector<std::vector<int32_t>> held;
  for (int op = 0; op < 5000; ++op) {
    const int kind = static_cast<int>(rng() % 3);
    if (kind < 2 || held.empty()) {
      // A request over one of a few prompts (so prefixes repeat), 1-5 blocks long.
      const auto tokens = tokens_of(1 + static_cast<int>(rng() % 5), static_cast<int>(rng() % 4));
      std::size_t reused = 0;
      auto blocks = fill(bm, tokens, &reused, static_cast<int64_t>(rng() % 2));
      for (const int32_t b : blocks) ASSERT_EQ(bm.partition_of(b), bm.partition_of(blocks[0]));
      held.push_back(std::move(blocks));
    } else {
      const std::size_t i = rng() % held.size();
      bm.release(held[i]);
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
    }
    if (op % 50 == 0) bm.check_invariants();
    int64_t referenced = 0;
    for (const auto& h : held) referenced += static_cast<int64_t>(h.size());
    ASSERT_LE(bm.in_use(), referenced);
  }
  for (const auto& h : held) bm.release(h);
  bm.check_invariants();
  EXPECT_EQ(bm.in_use(), 0);
  EXPECT_EQ(bm.available(), 32);
}

TEST(BlockManager, PartitionsHandOutTheirOwnRangesAndCountApart) {
  BlockManager bm(12, 3);  // ranges [0,4), [4,8), [8,12)
  EXPECT_EQ(bm.blocks_per_partition(), 4);
  std::vector<int32_t> middle;
  for (int i = 0; i < 4; ++i) {
    const auto b = bm.allocate(1);
    ASSERT_TRUE(b);
    EXPECT_EQ(bm.partition_of(*b), 1);
    middle.push_back(*b);
  }
  EXPECT_FALSE(bm.allocate(1)) << "partition 1 is full even though others are empty";
  EXPECT_EQ(bm.available(1), 0);
  EXPECT_EQ(bm.available(0), 4);
  EXPECT_EQ(bm.available(), 8);
  const auto other = bm.allocate(2);
  ASSERT_TRUE(other);
  EXPECT_EQ(bm.partition_of(*other), 2);
  bm.release(middle);
  EXPECT_EQ(bm.available(1), 4);
  bm.check_invariants();
}

TEST(BlockManager, AMatchedPrefixStaysInOnePartition) {
  BlockManager bm(8, 2);
  // The first block's contents cached in partition 0; the same first block followed by another
  // second block, recomputed in partition 1 (the duplicate first block is not registered, so its
  // successor's chain runs through partition 0's block).
  const auto shared = tokens_of(2, 5);
  bm.release(fill(bm, shared, nullptr, 0));
  std::vector<int32_t> longer(shared.begin(), shared.begin() + BlockManager::kBlockTokens);
  for (int i = 0; i < BlockManager::kBlockTokens + 1; ++i) longer.push_back(900 + i);
  std::vector<uint64_t> hashes;
  std::vector<int32_t> fresh;
  for (int i = 0; i < 2; ++i) fresh.push_back(*bm.allocate(1));
  const uint64_t h0 = bm.commit(fresh[0], 0, std::span<const int32_t>(longer).first(BlockManager::kBlockTokens));
  bm.commit(fresh[1], h0, std::span<const int32_t>(longer).subspan(BlockManager::kBlockTokens, BlockManager::kBlockTokens));
  bm.release(fresh);
  // A match of `longer` finds partition 0's first block, then stops rather than crossing into 1.
  const auto matched = bm.match_prefix(longer, hashes);
  ASSERT_EQ(matched.size(), 1u);
  EXPECT_EQ(bm.partition_of(matched[0]), 0);
  bm.release(matched);
  bm.check_invariants();
}

TEST(BlockManager, UnevenPartitionsAreRefused) {
  EXPECT_THROW(BlockManager(10, 3), Error);
  EXPECT_THROW(BlockManager(2, 3), Error);
}

}  // namespace
}  // namespace cachalot::engine
