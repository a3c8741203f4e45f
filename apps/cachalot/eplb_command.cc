// `cachalot eplb --loads FILE.json --replicas N --groups G --nodes N --gpus G [--json]`: the
// EPLB placement of measured expert loads, and how balanced the GPUs are before and after.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "apps/cachalot/commands.h"
#include "core/error.h"
#include "core/file_io.h"
#include "eplb/eplb.h"
#include "eplb/loads_json.h"

namespace cachalot::cli {
namespace {

struct Args {
  std::string loads_path;
  int64_t replicas = 0, groups = 1, nodes = 1, gpus = 1;
  bool json = false;
};

void run(const Args& a) {
  const eplb::Loads loads = eplb::parse_loads_json(read_text_file(a.loads_path));
  const eplb::Placement p =
      eplb::rebalance_experts(loads.values, loads.layers, loads.experts, a.replicas, a.groups, a.nodes, a.gpus);
  const double after = eplb::balancedness(loads.values, p, a.gpus);
  // Before: no replication, experts in order over the same GPUs (when they split evenly).
  const bool comparable = loads.experts % a.gpus == 0;
  const double before =
      comparable ? eplb::balancedness(loads.values, eplb::identity_placement(loads.layers, loads.experts), a.gpus) : 0;
  // One node: the hierarchical policy is the global one (all groups on the only node).
  const bool hierarchical = a.groups % a.nodes == 0 && a.nodes > 1;
  if (a.json) {
    nlohmann::json out = {{"policy", hierarchical ? "hierarchical" : "global"},
                          {"phy2log", nlohmann::json::array()},
                          {"log2phy", nlohmann::json::array()},
                          {"logcnt", nlohmann::json::array()},
                          {"balancedness", {{"after", after}}}};
    if (comparable) out["balancedness"]["before"] = before;
    for (int64_t l = 0; l < p.layers; ++l) {
      out["phy2log"].push_back(std::vector<int32_t>(p.phy2log.begin() + l * p.physical, p.phy2log.begin() + (l + 1) * p.physical));
      out["logcnt"].push_back(std::vector<int32_t>(p.logcnt.begin() + l * p.logical, p.logcnt.begin() + (l + 1) * p.logical));
      nlohmann::json per_expert = nlohmann::json::array();
      for (int64_t e = 0; e < p.logical; ++e)
        per_expert.push_back(std::vector<int32_t>(p.log2phy.begin() + (l * p.logical + e) * p.max_replicas,
                                                  p.log2phy.begin() + (l * p.logical + e + 1) * p.max_replicas));
      out["log2phy"].push_back(std::move(per_expert));
    }
    fmt::print("{}\n", out.dump());
    return;
  }
  fmt::print("{} layers x {} experts -> {} slots on {} GPUs ({} nodes, {} groups): {} policy\n", p.layers, p.logical,
             p.physical, a.gpus, a.nodes, a.groups, hierarchical ? "hierarchical" : "global");
  const int64_t per_gpu = p.physical / a.gpus;
  for (int64_t l = 0; l < p.layers; ++l) {
    fmt::print("layer {}:\n", l);
    const std::span<const float> w(loads.values.data() + l * p.logical, static_cast<size_t>(p.logical));
    const std::vector<double> load = eplb::gpu_loads(w, p, l, a.gpus);
    for (int64_t g = 0; g < a.gpus; ++g)
      fmt::print("  gpu {:>3}  load {:>10.1f}  experts {}\n", g, load[g],
                 std::vector<int32_t>(p.phy2log.begin() + l * p.physical + g * per_gpu,
                                      p.phy2log.begin() + l * p.physical + (g + 1) * per_gpu));
  }
  if (comparable)
    fmt::print("balancedness (mean/max GPU load): {:.4f} before (no replication), {:.4f} after\n", before, after);
  else
    fmt::print("balancedness (mean/max GPU load): {:.4f} after ({} experts do not split over {} GPUs without replicas)\n",
               after, p.logical, a.gpus);
}

}  // namespace

void add_eplb_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eplb", "place and replicate experts from measured loads (DeepSeek's EPLB)");
  auto a = std::make_shared<Args>();
  cmd->add_option("--loads", a->loads_path, "JSON: [[loads of layer 0's experts], ...] or {\"loads\": [...]}")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--replicas", a->replicas, "physical expert slots in all (logical experts + redundant ones)")->required();
  cmd->add_option("--groups", a->groups, "expert groups (the model's n_group; default 1)");
  cmd->add_option("--nodes", a->nodes, "nodes (default 1)");
  cmd->add_option("--gpus", a->gpus, "GPUs (EP ranks) in all (default 1)");
  cmd->add_flag("--json", a->json, "print the placement as one JSON object");
  cmd->callback([a] { run(*a); });
}

}  // namespace cachalot::cli
