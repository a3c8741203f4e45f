// EPLB: where to put the experts of an MoE model, and which to replicate, given how many tokens
// each one received (DeepSeek's eplb.py, same semantics and results).
//
// Loads are per layer and logical expert. `num_replicas` physical slots (>= logical experts) are
// spread evenly over `num_gpus` GPUs on `num_nodes` nodes: GPU g holds physical slots
// [g * P/G, (g+1) * P/G). Two policies:
// - hierarchical (num_groups % num_nodes == 0: keeps group-limited routing node-local): pack the
//   expert groups onto nodes by group load, replicate each node's experts into its P/nodes slots
//   (one more replica at a time, to the expert with the highest load per replica), then pack
//   those replicas (load / replica count) onto the node's GPUs;
// - global (otherwise): the same over one group and one node.
// Balanced packing puts items heaviest first into the pack with the least load that still has
// room (equal item counts per pack; ties to the lowest pack).
//
// Arithmetic is in float (eplb.py's weight.float()), so near-ties break as they do there.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace cachalot::eplb {

struct Placement {
  int64_t layers = 0, logical = 0, physical = 0, max_replicas = 0;
  std::vector<int32_t> phy2log;  // [layers][physical]: the logical expert in each slot
  std::vector<int32_t> log2phy;  // [layers][logical][max_replicas]: its slots, -1 padded
  std::vector<int32_t> logcnt;   // [layers][logical]: its replica count

  int32_t phy_to_log(int64_t layer, int64_t slot) const { return phy2log[layer * physical + slot]; }
  int32_t replicas(int64_t layer, int64_t expert) const { return logcnt[layer * logical + expert]; }
  // Slot of replica r (< replicas(layer, expert)) of an expert.
  int32_t slot_of(int64_t layer, int64_t expert, int64_t r) const {
    return log2phy[(layer * logical + expert) * max_replicas + r];
  }
};

// weight: [layers][logical] loads (tokens per expert), row-major.
Placement rebalance_experts(std::span<const float> weight, int64_t layers, int64_t logical, int64_t num_replicas,
                            int64_t num_groups, int64_t num_nodes, int64_t num_gpus);

// The placement with these slots (phy2log [layers][physical]); an expert's replicas are ranked
// in slot order. Error(kInvalidArgument) if an expert has no slot or an id is out of range.
Placement placement_from_slots(std::vector<int32_t> phy2log, int64_t layers, int64_t logical);

// No replication: expert e in slot e (GPU e / (logical / gpus)), what a deployment runs before EPLB.
Placement identity_placement(int64_t layers, int64_t logical);

// The pieces, as eplb.py names them (one row each; public for tests).
struct Packing {
  std::vector<int32_t> pack;          // [items]: the pack of each item
  std::vector<int32_t> rank_in_pack;  // [items]: its place in the pack
};
Packing balanced_packing(std::span<const float> weight, int64_t num_packs);
struct Replication {
  std::vector<int32_t> phy2log;  // [physical]: slots 0..logical-1 hold the experts, then the extras
  std::vector<int32_t> rank;     // [physical]: which replica of its expert each slot is
  std::vector<int32_t> logcnt;   // [logical]
};
Replication replicate_experts(std::span<const float> weight, int64_t num_physical);

// GPU loads of one layer under a placement: each slot carries load / replica count of its expert.
std::vector<double> gpu_loads(std::span<const float> layer_weight, const Placement& placement, int64_t layer,
                              int64_t num_gpus);
// Balancedness, DeepSeek's measure: mean GPU load / max GPU load (1 = perfect), averaged over
// the layers (layers without load count as 1).
double balancedness(std::span<const float> weight, const Placement& placement, int64_t num_gpus);

}  // namespace cachalot::eplb
