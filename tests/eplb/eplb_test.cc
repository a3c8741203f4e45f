// EPLB against DeepSeek's README example (worked through by hand below) and properties on random
// and skewed loads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "core/error.h"
#include "eplb/eplb.h"
#include "eplb/loads_json.h"

namespace cachalot::eplb {
namespace {

// DeepSeek's EPLB README: 2 layers x 12 experts, 16 replicas, 4 groups, 2 nodes, 8 GPUs.
//
// Layer 0, by hand. Groups of 3: loads 262 (0-2), 330 (3-5), 116 (6-8), 325 (9-11). Packed onto
// 2 nodes heaviest first into the lighter node: 330 -> node 0, 325 -> node 1, 262 -> node 1
// (325 < 330), 116 -> node 0. Node 0 holds groups 1, 2 = experts [3,4,5,6,7,8], node 1 groups
// 3, 0 = [9,10,11,0,1,2]. Each node has 8 slots for its 6 experts: node 0 replicates 5 (165)
// then 4 (104 > 165/2), node 1 replicates 10 (183) then 1 (132 > 183/2 = 91.5). Node 0's
// replica loads: 3:61 4:52 5:82.5 6:39 7:4 8:73 4:52 5:82.5, onto 4 GPUs of 2, heaviest first
// into the lightest GPU with room: GPU0 {5, 6}, GPU1 {5, 7}, GPU2 {8, 4}, GPU3 {3, 4}
// -> [5,6, 5,7, 8,4, 3,4]; node 1 likewise -> [10,2, 10,0, 1,11, 9,1]. Layer 1 the same way.
const std::vector<float> kReadmeLoads = {90, 132, 40, 61, 104, 165, 39, 4,   73,  56,  183, 86,
                                         20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16,  27};
const std::vector<int32_t> kReadmePhy2Log = {5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1,
                                             7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1};
const std::vector<int32_t> kReadmeLogCnt = {1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1};

TEST(Eplb, ReproducesTheReadmeExample) {
  const Placement p = rebalance_experts(kReadmeLoads, 2, 12, 16, 4, 2, 8);
  EXPECT_EQ(p.phy2log, kReadmePhy2Log);
  EXPECT_EQ(p.logcnt, kReadmeLogCnt);
  EXPECT_EQ(p.max_replicas, 2);
  // log2phy lists each expert's slots by replica, -1 padded.
  EXPECT_EQ(p.slot_of(0, 5, 0), 0);
  EXPECT_EQ(p.slot_of(0, 5, 1), 2);
  EXPECT_EQ(p.slot_of(0, 6, 0), 1);
  EXPECT_EQ(p.slot_of(0, 6, 1), -1);
  EXPECT_GT(balancedness(kReadmeLoads, p, 8), balancedness(kReadmeLoads, identity_placement(2, 12), 4));
}

TEST(Eplb, BalancedPackingFillsTheLightestPackWithRoom) {
  const Packing p = balanced_packing(std::vector<float>{5, 1, 4, 2, 3, 6}, 2);
  // Heaviest first: 6 -> pack 0 (tie: lowest), 5 -> 1, 4 -> 1 (5 < 6), 3 -> 0 (6 < 9), 2 -> 0 (9 = 9:
  // lowest), then pack 0 is full: 1 -> 1.
  EXPECT_EQ(p.pack, (std::vector<int32_t>{1, 1, 1, 0, 0, 0}));
  EXPECT_EQ(p.rank_in_pack, (std::vector<int32_t>{0, 2, 1, 2, 1, 0}));
  // One item per pack: the identity, whatever the loads.
  EXPECT_EQ(balanced_packing(std::vector<float>{1, 9, 5}, 3).pack, (std::vector<int32_t>{0, 1, 2}));
}

TEST(Eplb, ReplicationGoesToTheHighestLoadPerReplica) {
  const Replication r = replicate_experts(std::vector<float>{10, 30, 20}, 6);
  // Extras: 1 (30), then 2 (20 > 15), then 1 (15 vs 10 vs 10).
  EXPECT_EQ(r.phy2log, (std::vector<int32_t>{0, 1, 2, 1, 2, 1}));
  EXPECT_EQ(r.rank, (std::vector<int32_t>{0, 0, 0, 1, 1, 2}));
  EXPECT_EQ(r.logcnt, (std::vector<int32_t>{1, 3, 2}));
}

struct Shape {
  int64_t layers, logical, replicas, groups, nodes, gpus;
};

// Loads following Zipf(s) over a random permutation of the experts, per layer.
std::vector<float> zipf_loads(const Shape& s, double exponent, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> w(static_cast<size_t>(s.layers * s.logical));
  for (int64_t l = 0; l < s.layers; ++l) {
    std::vector<int64_t> perm(static_cast<size_t>(s.logical));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t i = 0; i < s.logical; ++i)
      w[l * s.logical + perm[i]] = std::round(static_cast<float>(1e5 / std::pow(static_cast<double>(i + 1), exponent)));
  }
  return w;
}

void check_properties(const std::vector<float>& w, const Shape& s, const Placement& p) {
  const bool hierarchical = s.groups % s.nodes == 0;
  const int64_t per_gpu = s.replicas / s.gpus, per_node = s.replicas / s.nodes, group = s.logical / s.groups;
  for (int64_t l = 0; l < s.layers; ++l) {
    std::vector<int32_t> seen(static_cast<size_t>(s.logical), 0);
    for (int64_t slot = 0; slot < s.replicas; ++slot) ++seen[p.phy_to_log(l, slot)];
    int64_t total = 0;
    for (int64_t e = 0; e < s.logical; ++e) {
      ASSERT_GE(p.replicas(l, e), 1) << "expert " << e << " has no slot";
      ASSERT_EQ(seen[e], p.replicas(l, e));
      total += p.replicas(l, e);
      for (int64_t r = 0; r < p.max_replicas; ++r) {
        const int32_t slot = p.slot_of(l, e, r);
        if (r < p.replicas(l, e)) ASSERT_EQ(p.phy_to_log(l, slot), e);
        else ASSERT_EQ(slot, -1);
      }
    }
    ASSERT_EQ(total, s.replicas);
    if (hierarchical) {
      // Every replica of a group's experts lies on one node.
      std::vector<std::set<int64_t>> nodes_of_group(static_cast<size_t>(s.groups));
      for (int64_t slot = 0; slot < s.replicas; ++slot) nodes_of_group[p.phy_to_log(l, slot) / group].insert(slot / per_node);
      for (const auto& n : nodes_of_group) ASSERT_EQ(n.size(), 1u);
    }
  }
  (void)per_gpu;
  // Never worse balanced than no replication with the same GPUs.
  EXPECT_GE(balancedness(w, p, s.gpus) + 1e-9, balancedness(w, identity_placement(s.layers, s.logical), s.gpus));
}

TEST(Eplb, PropertiesHoldOnRandomAndSkewedLoads) {
  const std::vector<Shape> shapes = {
      {3, 256, 288, 8, 4, 32},  // DeepSeek prefill: 4 nodes x 8 GPUs, 9 slots each (hierarchical)
      {2, 256, 320, 8, 8, 64},  // 8 nodes x 8 GPUs, 5 slots each (hierarchical)
      {2, 64, 96, 8, 3, 16},    // 8 groups over 3 nodes: global policy (96 over 16 GPUs)
      {2, 12, 12, 4, 2, 4},     // no redundant slots
      {1, 16, 32, 1, 1, 8},
  };
  uint32_t seed = 1;
  for (const Shape& s : shapes)
    for (const double exponent : {0.0, 0.5, 1.0, 1.5}) {
      const std::vector<float> w = zipf_loads(s, exponent, seed++);
      SCOPED_TRACE(testing::Message() << s.logical << " experts, " << s.replicas << " slots, zipf " << exponent);
      check_properties(w, s, rebalance_experts(w, s.layers, s.logical, s.replicas, s.groups, s.nodes, s.gpus));
    }
  // Uniform random loads too, with zeros.
  std::mt19937 rng(7);
  const Shape s{4, 32, 48, 4, 2, 8};
  std::vector<float> w(static_cast<size_t>(s.layers * s.logical));
  for (float& v : w) v = static_cast<float>(rng() % 4 == 0 ? 0 : rng() % 1000);
  check_properties(w, s, rebalance_experts(w, s.layers, s.logical, s.replicas, s.groups, s.nodes, s.gpus));
}

TEST(Eplb, BadShapesAndLoadsAreErrors) {
  const std::vector<float> w(24, 1.0f);
  EXPECT_THROW(rebalance_experts(w, 2, 12, 10, 4, 2, 2), Error);   // fewer slots than experts
  EXPECT_THROW(rebalance_experts(w, 2, 12, 16, 4, 2, 6), Error);   // 16 slots over 6 GPUs
  EXPECT_THROW(rebalance_experts(w, 2, 12, 16, 5, 1, 8), Error);   // 12 experts in 5 groups
  EXPECT_THROW(rebalance_experts(w, 3, 12, 16, 4, 2, 8), Error);   // 24 loads for 3 layers
  std::vector<float> bad = w;
  bad[3] = -1;
  EXPECT_THROW(rebalance_experts(bad, 2, 12, 16, 4, 2, 8), Error);
  bad[3] = std::nanf("");
  EXPECT_THROW(rebalance_experts(bad, 2, 12, 16, 4, 2, 8), Error);
}

TEST(EplbLoads, ParsesBothShapesAndNamesWhatIsWrong) {
  const Loads a = parse_loads_json("[[1, 2.5, 0], [3, 4, 5]]");
  EXPECT_EQ(a.layers, 2);
  EXPECT_EQ(a.experts, 3);
  EXPECT_EQ(a.values, (std::vector<float>{1, 2.5f, 0, 3, 4, 5}));
  EXPECT_EQ(parse_loads_json(R"({"loads": [[7, 8]]})").values, (std::vector<float>{7, 8}));
  auto expect_error = [](const std::string& text, const std::string& fragment) {
    try {
      parse_loads_json(text);
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error("[[1, 2]", "not JSON");
  expect_error("[]", "non-empty list");
  expect_error("[[1, 2], [3]]", "layer 1 has 1 experts, layer 0 has 2");
  expect_error(R"([[1, "x"]])", "layer 0 expert 1 is not a number");
  expect_error("[[1, -2]]", "loads must be >= 0");
  expect_error(R"({"other": 1})", "non-empty list");
}

}  // namespace
}  // namespace cachalot::eplb
