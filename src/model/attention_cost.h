// The two forms of MLA and what each costs, which decides the form per sequence (and gives the
// benchmarks' roofline the attention FLOPs a good implementation needs).
//   absorbed: queries projected into the latent space (q_nope x W_UK per head), attention over
//             the cached latent + rope shared by the heads, output expanded by W_UV (mla_decode);
//   expanded: every key's latent expanded by kv_b into per-head nope keys and values, then
//             ordinary multi-head attention (mla_prefill).
// Absorbed pays the projections per query and a wide product per query-key pair; expanded pays
// kv_b per key and a narrow product per pair: decode steps and short chunks after long contexts
// are cheaper absorbed, prompts expanded (DeepSeek serves prefill expanded, decode absorbed).
#pragma once

#include <cstdint>

#include "model/config.h"

namespace cachalot::model {

enum class AttentionForm { kAbsorbed, kExpanded };

// FLOPs of one layer's attention for one sequence: `queries` new tokens at the end of `keys`
// tokens (causal), projections into and out of the latent space included, o_proj not.
double attention_flops(const ModelConfig& config, AttentionForm form, int64_t queries, int64_t keys);

// The form with fewer FLOPs (absorbed on a tie).
AttentionForm cheaper_attention_form(const ModelConfig& config, int64_t queries, int64_t keys);

}  // namespace cachalot::model
