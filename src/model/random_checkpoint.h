// Random checkpoints in the official DeepSeek-V3 layout (config.json, model.safetensors.index.json,
// shards of FP8 E4M3 weights with 128x128 weight_scale_inv, BF16 norms / embeddings / router /
// lm_head, F32 e_score_correction_bias), for demos and benchmarks: no real weights can be
// downloaded here. Values are uniform with variance 1/fan_in, so activations keep their scale
// through the layers. Deterministic in the seed (not in the thread count).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace cachalot::model {

// "tiny" (the fixture's dimensions), "mini" (a few hundred MB), "v3-slice" (DeepSeek-V3's
// dimensions with 2 layers: one dense, one MoE of 64 experts, vocab 32768).
ModelConfig preset_config(const std::string& name);
std::vector<std::string> preset_names();

struct WriteSummary {
  int64_t tensors = 0;
  uint64_t bytes = 0;
  int64_t shards = 0;
};

// Writes the checkpoint into `dir` (created if missing; existing model files are replaced).
WriteSummary write_random_checkpoint(const ModelConfig& config, const std::string& dir, uint64_t seed);

}  // namespace cachalot::model
