// `cachalot bench eplb`: how balanced EPLB leaves the GPUs on skewed loads (Zipf over the
// experts), against the same GPUs without replication, and how long a placement of a whole
// model (58 MoE layers x 256 experts, DeepSeek-V3) takes, against sorting the same loads (the
// least any greedy placement does).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <fmt/format.h>

#include "bench/benches.h"
#include "eplb/eplb.h"

namespace cachalot::bench {
namespace {

constexpr int64_t kExperts = 256, kGroups = 8;

// Per layer: load of the i-th most popular expert ~ 1 / i^s, experts in random order.
std::vector<float> zipf_loads(int64_t layers, double s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> w(static_cast<size_t>(layers * kExperts));
  std::vector<int64_t> order(kExperts);
  for (int64_t l = 0; l < layers; ++l) {
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    for (int64_t i = 0; i < kExperts; ++i)
      w[l * kExperts + order[i]] = static_cast<float>(1e6 / std::pow(static_cast<double>(i + 1), s));
  }
  return w;
}

struct Deployment {
  const char* name;
  int64_t slots, groups, nodes, gpus;
};

}  // namespace

void run_eplb(const Options& options, Reporter& reporter) {
  // DeepSeek's prefill unit (4 nodes x 8 GPUs, 9 slots each: 32 redundant) and a decode-like one
  // (8 nodes x 8 GPUs, 5 slots each), hierarchical (8 groups) and global (groups ignored: what
  // DeepSeek uses for decode, where one hot group per node cannot be spread).
  const Deployment deployments[] = {{"prefill 32 gpus 288 slots hierarchical", 288, kGroups, 4, 32},
                                    {"decode 64 gpus 320 slots hierarchical", 320, kGroups, 8, 64},
                                    {"decode 64 gpus 320 slots global", 320, 1, 8, 64}};
  const int64_t layers = options.quick ? 8 : 58;
  for (const Deployment& d : deployments)
    for (const double s : {0.5, 1.0, 1.5}) {
      const std::vector<float> w = zipf_loads(layers, s, 7);
      const eplb::Placement p = eplb::rebalance_experts(w, layers, kExperts, d.slots, d.groups, d.nodes, d.gpus);
      const double after = eplb::balancedness(w, p, d.gpus);
      const double before = eplb::balancedness(w, eplb::identity_placement(layers, kExperts), d.gpus);
      reporter.add(make_result("eplb", fmt::format("{} zipf={}", d.name, s), "balancedness", after, "mean/max",
                               "no-replication", before, false));
    }
  // Placement time of a whole model.
  const std::vector<float> w = zipf_loads(58, 1.0, 11);
  const int repeats = options.quick ? 3 : 9;
  const double place_ns = median_ns([&] { eplb::rebalance_experts(w, 58, kExperts, 288, kGroups, 4, 32); }, repeats, 1);
  const double sort_ns = median_ns(
      [&] {
        for (int64_t l = 0; l < 58; ++l) {
          std::vector<float> row(w.begin() + l * kExperts, w.begin() + (l + 1) * kExperts);
          std::sort(row.begin(), row.end(), std::greater<>());
        }
      },
      repeats, 10);
  reporter.add(make_result("eplb", "rebalance 58 layers x 256 experts -> 288 slots", "latency", place_ns / 1e6, "ms",
                           "sort-the-loads", sort_ns / 1e6, true));
}

}  // namespace cachalot::bench
