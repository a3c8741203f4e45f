#include "bench/bench_models.h"

#include <filesystem>
#include <numeric>
#include <random>

#include "bench/bench_report.h"
#include "core/log.h"
#include "model/random_checkpoint.h"

namespace cachalot::bench {

std::string ensure_preset_checkpoint(const std::string& preset) {
  const std::string dir = "bench-models/" + preset;
  if (!std::filesystem::exists(dir + "/model.safetensors.index.json")) {
    log::warn("writing a random {} checkpoint into {} (once; `cachalot init` does the same)", preset, dir);
    model::write_random_checkpoint(model::preset_config(preset), dir, 0);
  }
  return dir;
}

PromptBatch make_prompt_batch(const model::Model& m, int64_t batch, int64_t len, uint32_t seed) {
  const int64_t blocks_per_seq = (len + 63) / 64;
  PromptBatch b{m.make_kv_cache(batch * blocks_per_seq), {}, {}, {}};
  b.tables.resize(static_cast<size_t>(batch));
  b.prompts.resize(static_cast<size_t>(batch));
  std::mt19937 rng(seed);
  for (int64_t s = 0; s < batch; ++s) {
    b.tables[s].resize(static_cast<size_t>(blocks_per_seq));
    std::iota(b.tables[s].begin(), b.tables[s].end(), static_cast<int32_t>(s * blocks_per_seq));
    for (int64_t i = 0; i < len; ++i) b.prompts[s].push_back(static_cast<int32_t>(rng() % m.config().vocab_size));
  }
  // After the vectors are complete: the steps view their buffers.
  for (int64_t s = 0; s < batch; ++s) b.steps.push_back({b.prompts[s], 0, b.tables[s]});
  return b;
}

void fill_cache(const model::Model& m, model::KvCache& cache, const std::vector<int32_t>& table, int64_t tokens,
                uint32_t seed) {
  const auto& c = m.config();
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> latent(static_cast<size_t>(c.kv_lora_rank)), rope(static_cast<size_t>(c.qk_rope_head_dim));
  for (auto& layer : cache.layers) {
    for (int64_t t = 0; t < tokens; ++t) {
      for (float& v : latent) v = dist(rng);
      for (float& v : rope) v = dist(rng);
      layer.write_token(table[t / 64], t % 64, latent.data(), rope.data());
    }
  }
}

double decode_step_seconds(const model::Model& m, int64_t batch, int64_t context, double budget_s, int max_repeats,
                           model::ForwardOutput* out) {
  const int64_t blocks_per_seq = (context + 1 + 63) / 64;
  model::KvCache cache = m.make_kv_cache(batch * blocks_per_seq);
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(batch));
  std::vector<int32_t> tokens(static_cast<size_t>(batch));
  std::vector<model::SequenceStep> steps;
  for (int64_t s = 0; s < batch; ++s) {
    tables[s].resize(static_cast<size_t>(blocks_per_seq));
    std::iota(tables[s].begin(), tables[s].end(), static_cast<int32_t>(s * blocks_per_seq));
    fill_cache(m, cache, tables[s], context, static_cast<uint32_t>(s));
    tokens[s] = static_cast<int32_t>((s * 7919) % m.config().vocab_size);
  }
  for (int64_t s = 0; s < batch; ++s) steps.push_back({{&tokens[s], 1}, context, tables[s]});
  model::ForwardOutput last;
  const double ns = median_ns_warm([&] { last = m.forward(steps, cache, {.record_routing = true}); }, budget_s, max_repeats);
  if (out) *out = std::move(last);
  return ns * 1e-9;
}

}  // namespace cachalot::bench
