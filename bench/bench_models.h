// What the model-level benchmarks (`bench model`, `bench serve`) share: random checkpoints
// written once into bench-models/, and timing of decode steps over a filled KV cache.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace cachalot::bench {

// bench-models/<preset>, written by write_random_checkpoint on first use (seed 0).
std::string ensure_preset_checkpoint(const std::string& preset);

// `batch` prompts of `len` random tokens (seeded), each with blocks of its own in `cache`: the
// steps of one prefill forward.
struct PromptBatch {
  model::KvCache cache;
  std::vector<std::vector<int32_t>> tables, prompts;
  std::vector<model::SequenceStep> steps;  // views into tables and prompts
};
PromptBatch make_prompt_batch(const model::Model& m, int64_t batch, int64_t len, uint32_t seed);

// Random latent + rope values for positions [0, tokens) of a sequence's blocks, in every layer.
void fill_cache(const model::Model& m, model::KvCache& cache, const std::vector<int32_t>& table, int64_t tokens,
                uint32_t seed);

// Median seconds of one decode step of `batch` sequences whose caches hold `context` random
// tokens (each step feeds one token per sequence at position `context`). `out` receives the
// last step's output (routing recorded).
double decode_step_seconds(const model::Model& m, int64_t batch, int64_t context, double budget_s, int max_repeats,
                           model::ForwardOutput* out = nullptr);

}  // namespace cachalot::bench
