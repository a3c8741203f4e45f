#include "model/attention_cost.h"

namespace cachalot::model {

double attention_flops(const ModelConfig& c, AttentionForm form, int64_t queries, int64_t keys) {
  const double q = static_cast<double>(queries), k = static_cast<double>(keys);
  const double heads = static_cast<double>(c.num_attention_heads), latent = static_cast<double>(c.kv_lora_rank),
               dn = static_cast<double>(c.qk_nope_head_dim), dr = static_cast<double>(c.qk_rope_head_dim),
               dv = static_cast<double>(c.v_head_dim);
  const double pairs = q * (k - q) + q * (q + 1) / 2;  // query-key pairs under the causal mask
  const double projection = 2.0 * heads * latent * (dn + dv);  // W_UK + W_UV, or kv_b, per token
  if (form == AttentionForm::kAbsorbed) return q * projection + pairs * heads * 2.0 * (2.0 * latent + dr);
  return k * projection + pairs * heads * 2.0 * (dn + dr + dv);
}

AttentionForm cheaper_attention_form(const ModelConfig& c, int64_t queries, int64_t keys) {
  return attention_flops(c, AttentionForm::kExpanded, queries, keys) <
                 attention_flops(c, AttentionForm::kAbsorbed, queries, keys)
             ? AttentionForm::kExpanded
             : AttentionForm::kAbsorbed;
}

}  // namespace cachalot::model
