#include "apps/cachalot/generation.h"

#include <chrono>
#include <numeric>

#include "core/error.h"

namespace cachalot::cli {

Generation generate(const model::Model& m, std::span<const int32_t> prompt_ids, const GenerationOptions& options,
                    const std::function<void(int32_t)>& on_token) {
  const model::ModelConfig& c = m.config();
  CACHALOT_CHECK_ARG(options.max_tokens >= 0, "--max-tokens must be >= 0, got {}", options.max_tokens);
  model::validate(options.sampling);
  model::check_sequence(c, prompt_ids, options.max_tokens);
  const int64_t prompt = static_cast<int64_t>(prompt_ids.size()), total = prompt + options.max_tokens;
  // One sequence: its blocks are simply 0..n-1 (with EP ranks as processes: rank 0's range).
  const int64_t blocks = (total + 63) / 64;
  model::KvCache cache = m.make_kv_cache(blocks * m.attention_ranks());
  std::vector<int32_t> table(static_cast<size_t>(blocks));
  std::iota(table.begin(), table.end(), 0);

  Generation result;
  model::Sampler sampler(options.sampling);
  const auto t0 = std::chrono::steady_clock::now();
  const model::SequenceStep first{prompt_ids, 0, table};
  model::ForwardOutput out = m.forward({&first, 1}, cache, {.all_logits = options.prompt_logits});
  const auto t1 = std::chrono::steady_clock::now();
  if (options.prompt_logits) {
    for (int64_t r = 0; r < prompt; ++r) {
      result.prompt_logits.emplace_back(out.logits.data<float>() + r * c.vocab_size,
                                        out.logits.data<float>() + (r + 1) * c.vocab_size);
    }
  }
  std::vector<int32_t>& generated = result.output;
  const float* last = out.logits.data<float>() + (out.logits.size(0) - 1) * c.vocab_size;
  while (static_cast<int64_t>(generated.size()) < options.max_tokens) {
    const int32_t token = sampler.sample(last, c.vocab_size);
    generated.push_back(token);
    if (on_token) on_token(token);
    if (!options.ignore_eos && c.eos_token_id && token == *c.eos_token_id) break;
    if (static_cast<int64_t>(generated.size()) == options.max_tokens) break;
    const model::SequenceStep step{{&generated.back(), 1}, prompt + static_cast<int64_t>(generated.size()) - 1, table};
    out = m.forward({&step, 1}, cache);
    last = out.logits.data<float>();
  }
  const auto t2 = std::chrono::steady_clock::now();
  result.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  result.decode_seconds = std::chrono::duration<double>(t2 - t1).count();
  return result;
}

}  // namespace cachalot::cli
