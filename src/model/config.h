// The model's hyper-parameters, read from a Hugging Face config.json (DeepSeek-V3, and V2 /
// V2-Lite, which differ only in values: q_lora_rank 0 means a plain q_proj, softmax routing,
// greedy or group-limited top-k). Every field we use is checked: a missing, mistyped, unknown
// or inconsistent value is an error naming the field.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace cachalot::model {

enum class ScoringFunc { kSigmoid, kSoftmax };
enum class TopkMethod {
  kNoauxTc,             // V3: biased sigmoid scores choose; groups scored by the sum of their top 2
  kGreedy,              // V2-Lite: plain top-k
  kGroupLimitedGreedy,  // V2: groups scored by their best expert
};

// YaRN context extension (rope_scaling.type = "yarn").
struct YarnScaling {
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;      // dense layers' MLP
  int64_t moe_intermediate_size = 0;  // each routed (and shared) expert
  int64_t num_hidden_layers = 0;
  int64_t first_k_dense_replace = 0;  // layers [0, k) are dense, the rest MoE
  int64_t moe_layer_freq = 1;
  int64_t num_attention_heads = 0;
  int64_t q_lora_rank = 0;  // 0: q_proj without the low-rank pair
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t n_routed_experts = 0;  // 0: no MoE layers
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  double routed_scaling_factor = 1.0;
  bool norm_topk_prob = false;
  ScoringFunc scoring_func = ScoringFunc::kSoftmax;
  TopkMethod topk_method = TopkMethod::kGreedy;
  double rope_theta = 10000.0;
  std::optional<YarnScaling> yarn;
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 0;
  int64_t num_nextn_predict_layers = 0;  // MTP modules: present in checkpoints, not run here
  bool fp8_weights = false;              // quantization_config: e4m3 with 128x128 block scales
  std::optional<int64_t> bos_token_id, eos_token_id;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool is_moe_layer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  // (nope + rope)^-0.5, times mscale^2 under YaRN (mscale = 0.1 * mscale_all_dim * ln(factor) + 1).
  double softmax_scale() const;
};

// Throws Error (kInvalidArgument / kUnsupported / kCorruptData) naming the field at fault.
ModelConfig parse_config(const nlohmann::json& json);
// Reads DIR/config.json (or the file itself).
ModelConfig load_config(const std::string& path);
// The config.json text for a config (used by `cachalot init`).
nlohmann::json config_to_json(const ModelConfig& config);

// Checks that a sequence can run on this model: a non-empty prompt of ids inside the vocabulary
// that, with max_tokens more, fits the context. Error(kInvalidArgument) saying what is wrong.
void check_sequence(const ModelConfig& config, std::span<const int32_t> prompt, int64_t max_tokens);

}  // namespace cachalot::model
