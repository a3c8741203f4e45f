// The model's weights, bound by their Hugging Face names (model.layers.N.self_attn.q_a_proj.weight,
// ...mlp.experts.E.gate_proj.weight, ...mlp.gate.e_score_correction_bias) to views into the
// mmap'd checkpoint: nothing is copied here (norm vectors and the router, a few KiB per layer,
// are widened to FP32). Every expected tensor is checked for presence, dtype and shape, and all
// problems are reported in one error. MTP layers (index num_hidden_layers and up) are not bound.
#pragma once

#include <cstdint>
#include <vector>

#include "core/safetensors.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/linear.h"

namespace cachalot::model {

struct MlpWeights {  // down(silu(gate(x)) * up(x))
  Linear gate, up, down;
};

struct AttentionWeights {
  Linear q_a, q_b;     // q_lora_rank > 0
  Tensor q_a_norm;     // F32 [q_lora_rank]
  Linear q;            // q_lora_rank == 0
  Linear kv_a;         // [kv_lora_rank + qk_rope_head_dim, hidden]
  Tensor kv_a_norm;    // F32 [kv_lora_rank]
  Linear kv_b;         // [heads * (qk_nope + v_head), kv_lora_rank]
  Linear o;            // [hidden, heads * v_head]
};

struct MoeWeights {
  Linear router;       // [n_routed_experts, hidden], BF16 in the checkpoint
  Tensor score_bias;   // F32 [n_routed_experts] (noaux_tc), else undefined
  std::vector<MlpWeights> experts;
  bool has_shared = false;
  MlpWeights shared;   // intermediate n_shared_experts * moe_intermediate_size
};

struct LayerWeights {
  Tensor attn_norm, ffn_norm;  // F32 [hidden]
  AttentionWeights attn;
  bool is_moe = false;
  MlpWeights mlp;              // dense layers
  MoeWeights moe;              // MoE layers
};

struct ModelWeights {
  Tensor embed;                // BF16 or F32 [vocab, hidden], a view
  std::vector<LayerWeights> layers;
  Tensor final_norm;           // F32 [hidden]
  Linear lm_head;              // [vocab, hidden]
};

ModelWeights bind_weights(const Checkpoint& checkpoint, const ModelConfig& config);

}  // namespace cachalot::model
