#include "eplb/eplb.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace cachalot::eplb {
namespace {

std::vector<int32_t> inverse(const std::vector<int32_t>& perm) {
  std::vector<int32_t> inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inv[static_cast<size_t>(perm[i])] = static_cast<int32_t>(i);
  return inv;
}

struct LayerPlacement {
  std::vector<int32_t> phy2log, rank, logcnt;
};

// eplb.py's rebalance_experts_hierarchical for one layer.
LayerPlacement place_layer(std::span<const float> w, int64_t num_physical, int64_t num_groups, int64_t num_nodes,
                           int64_t num_gpus) {
  const auto logical = static_cast<int64_t>(w.size());
  const int64_t group_size = logical / num_groups, groups_per_node = num_groups / num_nodes;
  const int64_t log_per_node = logical / num_nodes, phy_per_node = num_physical / num_nodes;
  const int64_t phy_per_gpu = num_physical / num_gpus;

  // 1. Groups onto nodes by their total load. mlog ("middle logical") numbers the experts node
  //    by node in that packing: log2mlog maps a logical expert to it.
  std::vector<float> group_load(static_cast<size_t>(num_groups), 0.0f);
  for (int64_t e = 0; e < logical; ++e) group_load[e / group_size] += w[e];
  const Packing groups = balanced_packing(group_load, num_nodes);
  std::vector<int32_t> log2mlog(static_cast<size_t>(logical));
  for (int64_t e = 0; e < logical; ++e) {
    const int64_t g = e / group_size;
    log2mlog[e] = static_cast<int32_t>((groups.pack[g] * groups_per_node + groups.rank_in_pack[g]) * group_size + e % group_size);
  }
  const std::vector<int32_t> mlog2log = inverse(log2mlog);

  LayerPlacement out;
  out.phy2log.resize(static_cast<size_t>(num_physical));
  out.rank.resize(static_cast<size_t>(num_physical));
  std::vector<int32_t> mlogcnt(static_cast<size_t>(logical));
  for (int64_t n = 0; n < num_nodes; ++n) {
    // 2. Replicate the node's experts into its slots.
    std::vector<float> node_load(static_cast<size_t>(log_per_node));
    for (int64_t j = 0; j < log_per_node; ++j) node_load[j] = w[mlog2log[n * log_per_node + j]];
    const Replication rep = replicate_experts(node_load, phy_per_node);
    std::copy(rep.logcnt.begin(), rep.logcnt.end(), mlogcnt.begin() + n * log_per_node);
    // 3. Pack the replicas (each carrying load / count) onto the node's GPUs.
    std::vector<float> replica_load(static_cast<size_t>(phy_per_node));
    for (int64_t i = 0; i < phy_per_node; ++i)
      replica_load[i] = node_load[rep.phy2log[i]] / static_cast<float>(rep.logcnt[rep.phy2log[i]]);
    const Packing gpus = balanced_packing(replica_load, num_gpus / num_nodes);
    std::vector<int32_t> phy2pphy(static_cast<size_t>(phy_per_node));
    for (int64_t i = 0; i < phy_per_node; ++i) phy2pphy[i] = static_cast<int32_t>(gpus.pack[i] * phy_per_gpu + gpus.rank_in_pack[i]);
    const std::vector<int32_t> pphy2phy = inverse(phy2pphy);
    for (int64_t pp = 0; pp < phy_per_node; ++pp) {
      const int32_t phy = pphy2phy[pp];
      out.phy2log[n * phy_per_node + pp] = mlog2log[n * log_per_node + rep.phy2log[phy]];
      out.rank[n * phy_per_node + pp] = rep.rank[phy];
    }
  }
  out.logcnt.resize(static_cast<size_t>(logical));
  for (int64_t e = 0; e < logical; ++e) out.logcnt[e] = mlogcnt[log2mlog[e]];
  return out;
}

}  // namespace

Packing balanced_packing(std::span<const float> weight, int64_t num_packs) {
  const auto items = static_cast<int64_t>(weight.size());
  CACHALOT_CHECK_ARG(num_packs >= 1 && items % num_packs == 0, "eplb: {} items do not pack evenly into {} packs", items,
                     num_packs);
  const int64_t per_pack = items / num_packs;
  Packing p;
  p.pack.resize(static_cast<size_t>(items));
  p.rank_in_pack.assign(static_cast<size_t>(items), 0);
  if (per_pack == 1) {
    std::iota(p.pack.begin(), p.pack.end(), 0);
    return p;
  }
  std::vector<int32_t> order(static_cast<size_t>(items));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return weight[a] > weight[b]; });
  std::vector<float> load(static_cast<size_t>(num_packs), 0.0f);
  std::vector<int64_t> count(static_cast<size_t>(num_packs), 0);
  for (const int32_t item : order) {
    int64_t best = -1;
    for (int64_t k = 0; k < num_packs; ++k)
      if (count[k] < per_pack && (best < 0 || load[k] < load[best])) best = k;
    p.pack[item] = static_cast<int32_t>(best);
    p.rank_in_pack[item] = static_cast<int32_t>(count[best]++);
    load[best] += weight[item];
  }
  return p;
}

Replication replicate_experts(std::span<const float> weight, int64_t num_physical) {
  const auto logical = static_cast<int64_t>(weight.size());
  CACHALOT_CHECK_ARG(num_physical >= logical, "eplb: {} slots for {} experts; every expert needs one", num_physical, logical);
  Replication r;
  r.phy2log.resize(static_cast<size_t>(num_physical));
  r.rank.assign(static_cast<size_t>(num_physical), 0);
  r.logcnt.assign(static_cast<size_t>(logical), 1);
  std::iota(r.phy2log.begin(), r.phy2log.begin() + logical, 0);
  for (int64_t slot = logical; slot < num_physical; ++slot) {
    // The expert with the highest load per replica (the first on ties) gets one more.
    int64_t best = 0;
    for (int64_t e = 1; e < logical; ++e)
      if (weight[e] / static_cast<float>(r.logcnt[e]) > weight[best] / static_cast<float>(r.logcnt[best])) best = e;
    r.phy2log[slot] = static_cast<int32_t>(best);
    r.rank[slot] = r.logcnt[best]++;
  }
  return r;
}

Placement rebalance_experts(std::span<const float> weight, int64_t layers, int64_t logical, int64_t num_replicas,
                            int64_t num_groups, int64_t num_nodes, int64_t num_gpus) {
  CACHALOT_CHECK_ARG(layers >= 1 && logical >= 1 && static_cast<int64_t>(weight.size()) == layers * logical,
                     "eplb: {} loads for {} layers x {} experts", weight.size(), layers, logical);
  for (const float v : weight) CACHALOT_CHECK_ARG(v >= 0 && std::isfinite(v), "eplb: loads must be finite and >= 0, got {}", v);
  CACHALOT_CHECK_ARG(num_gpus >= 1 && num_nodes >= 1 && num_groups >= 1, "eplb: groups, nodes and GPUs must be >= 1");
  CACHALOT_CHECK_ARG(num_replicas >= logical, "eplb: {} replicas for {} experts; every expert needs a slot", num_replicas,
                     logical);
  CACHALOT_CHECK_ARG(num_replicas % num_gpus == 0, "eplb: {} replicas do not split evenly over {} GPUs", num_replicas,
                     num_gpus);
  CACHALOT_CHECK_ARG(logical % num_groups == 0, "eplb: {} experts do not split into {} groups", logical, num_groups);
  // Hierarchical when the groups split over the nodes; otherwise one group on one node.
  if (num_groups % num_nodes == 0) {
    CACHALOT_CHECK_ARG(num_gpus % num_nodes == 0, "eplb: {} GPUs do not split evenly over {} nodes", num_gpus, num_nodes);
  } else {
    num_groups = num_nodes = 1;
  }

  Placement p;
  p.layers = layers;
  p.logical = logical;
  p.physical = num_replicas;
  p.phy2log.resize(static_cast<size_t>(layers * num_replicas));
  p.logcnt.resize(static_cast<size_t>(layers * logical));
  std::vector<int32_t> rank(static_cast<size_t>(layers * num_replicas));
  for (int64_t l = 0; l < layers; ++l) {
    const LayerPlacement lp =
        place_layer(weight.subspan(static_cast<size_t>(l * logical), static_cast<size_t>(logical)), num_replicas,
                    num_groups, num_nodes, num_gpus);
    std::copy(lp.phy2log.begin(), lp.phy2log.end(), p.phy2log.begin() + l * num_replicas);
    std::copy(lp.rank.begin(), lp.rank.end(), rank.begin() + l * num_replicas);
    std::copy(lp.logcnt.begin(), lp.logcnt.end(), p.logcnt.begin() + l * logical);
  }
  p.max_replicas = *std::max_element(p.logcnt.begin(), p.logcnt.end());
  p.log2phy.assign(static_cast<size_t>(layers * logical * p.max_replicas), -1);
  for (int64_t l = 0; l < layers; ++l)
    for (int64_t s = 0; s < num_replicas; ++s)
      p.log2phy[(l * logical + p.phy2log[l * num_replicas + s]) * p.max_replicas + rank[l * num_replicas + s]] =
          static_cast<int32_t>(s);
  return p;
}

Placement placement_from_slots(std::vector<int32_t> phy2log, int64_t layers, int64_t logical) {
  CACHALOT_CHECK_ARG(layers >= 1 && logical >= 1 && !phy2log.empty() && static_cast<int64_t>(phy2log.size()) % layers == 0,
                     "eplb: {} slots for {} layers", phy2log.size(), layers);
  Placement p;
  p.layers = layers;
  p.logical = logical;
  p.physical = static_cast<int64_t>(phy2log.size()) / layers;
  p.phy2log = std::move(phy2log);
  p.logcnt.assign(static_cast<size_t>(layers * logical), 0);
  for (int64_t l = 0; l < layers; ++l)
    for (int64_t s = 0; s < p.physical; ++s) {
      const int32_t e = p.phy2log[l * p.physical + s];
      CACHALOT_CHECK_ARG(e >= 0 && e < logical, "eplb: slot {} of layer {} holds expert {}, outside 0..{}", s, l, e, logical - 1);
      ++p.logcnt[l * logical + e];
    }
  for (int64_t i = 0; i < layers * logical; ++i)
    CACHALOT_CHECK_ARG(p.logcnt[i] >= 1, "eplb: expert {} of layer {} has no slot", i % logical, i / logical);
  p.max_replicas = *std::max_element(p.logcnt.begin(), p.logcnt.end());
  p.log2phy.assign(static_cast<size_t>(layers * logical * p.max_replicas), -1);
  std::vector<int32_t> seen(static_cast<size_t>(logical));
  for (int64_t l = 0; l < layers; ++l) {
    std::fill(seen.begin(), seen.end(), 0);
    for (int64_t s = 0; s < p.physical; ++s) {
      const int32_t e = p.phy2log[l * p.physical + s];
      p.log2phy[(l * logical + e) * p.max_replicas + seen[e]++] = static_cast<int32_t>(s);
    }
  }
  return p;
}

Placement identity_placement(int64_t layers, int64_t logical) {
  std::vector<int32_t> slots(static_cast<size_t>(layers * logical));
  for (int64_t l = 0; l < layers; ++l) std::iota(slots.begin() + l * logical, slots.begin() + (l + 1) * logical, 0);
  return placement_from_slots(std::move(slots), layers, logical);
}

std::vector<double> gpu_loads(std::span<const float> layer_weight, const Placement& placement, int64_t layer,
                              int64_t num_gpus) {
  CACHALOT_CHECK_ARG(num_gpus >= 1 && placement.physical % num_gpus == 0, "eplb: {} slots do not split over {} GPUs",
                     placement.physical, num_gpus);
  const int64_t per_gpu = placement.physical / num_gpus;
  std::vector<double> load(static_cast<size_t>(num_gpus), 0.0);
  for (int64_t s = 0; s < placement.physical; ++s) {
    const int32_t e = placement.phy_to_log(layer, s);
    load[s / per_gpu] += static_cast<double>(layer_weight[e]) / placement.replicas(layer, e);
  }
  return load;
}

double balancedness(std::span<const float> weight, const Placement& placement, int64_t num_gpus) {
  double sum = 0;
  for (int64_t l = 0; l < placement.layers; ++l) {
    const std::vector<double> load = gpu_loads(
        weight.subspan(static_cast<size_t>(l * placement.logical), static_cast<size_t>(placement.logical)), placement, l,
        num_gpus);
    const double max = *std::max_element(load.begin(), load.end());
    const double mean = std::accumulate(load.begin(), load.end(), 0.0) / static_cast<double>(load.size());
    sum += max > 0 ? mean / max : 1.0;
  }
  return sum / static_cast<double>(placement.layers);
}

}  // namespace cachalot::eplb
