#include "model/weights.h"

#include <string>

#include "core/convert.h"
#include "core/error.h"
#include "gemm/quantize.h"

namespace cachalot::model {
namespace {

// Looks tensors up and records every problem instead of stopping at the first.
class Binder {
 public:
  explicit Binder(const Checkpoint& c) : c_(c) {}

  Tensor tensor(const std::string& name, std::initializer_list<DType> dtypes, const Dims& shape) {
    if (!c_.contains(name)) {
      missing_.push_back(name);
      return {};
    }
    const TensorInfo& info = c_.info(name);
    bool dtype_ok = false;
    for (DType d : dtypes) dtype_ok |= info.dtype == d;
    std::string want_dtypes;
    for (DType d : dtypes) want_dtypes += (want_dtypes.empty() ? "" : " or ") + std::string(dtype_name(d));
    if (!dtype_ok || info.shape != shape) {
      wrong_.push_back(fmt::format("{}: expected {} {}, found {} {}", name, want_dtypes, shape.to_string(),
                                   dtype_name(info.dtype), info.shape.to_string()));
      return {};
    }
    return c_.tensor(name);
  }

  // A norm or bias vector, widened to FP32 (owned).
  Tensor vector_f32(const std::string& name, int64_t n) {
    const Tensor t = tensor(name, {DType::kBF16, DType::kF32}, {n});
    if (!t.defined()) return {};
    if (t.dtype() == DType::kF32) return t.clone();
    Tensor out = Tensor::empty(DType::kF32, {n});
    convert(t.data<bf16>(), out.mutable_data<float>(), static_cast<size_t>(n));
    return out;
  }

  // prefix.weight: FP8 with prefix.weight_scale_inv, or BF16 / F32 alone.
  Linear linear(const std::string& prefix, int64_t out, int64_t in) {
    const std::string w = prefix + ".weight", s = prefix + ".weight_scale_inv";
    if (c_.contains(w) && c_.info(w).dtype == DType::kF8E4M3) {
      Tensor weight = tensor(w, {DType::kF8E4M3}, {out, in});
      Tensor scale = tensor(s, {DType::kF32}, {gemm::ceil_div(out, 128), gemm::ceil_div(in, 128)});
      if (!weight.defined() || !scale.defined()) return {};
      return Linear(prefix, weight, scale);
    }
    Tensor weight = tensor(w, {DType::kBF16, DType::kF32}, {out, in});
    if (!weight.defined()) return {};
    return Linear(prefix, weight, {});
  }

  MlpWeights mlp(const std::string& prefix, int64_t hidden, int64_t inter) {
    return {linear(prefix + ".gate_proj", inter, hidden), linear(prefix + ".up_proj", inter, hidden),
            linear(prefix + ".down_proj", hidden, inter)};
  }

  void finish() const {
    if (missing_.empty() && wrong_.empty()) return;
    std::string msg = fmt::format("checkpoint {} does not match config.json:", c_.directory());
    constexpr size_t kShown = 20;
    auto list = [&](const std::vector<std::string>& items, const char* what) {
      if (items.empty()) return;
      msg += fmt::format(" {} {} tensor(s):", items.size(), what);
      for (size_t i = 0; i < items.size() && i < kShown; ++i) msg += " " + items[i] + (i + 1 < items.size() ? "," : "");
      if (items.size() > kShown) msg += fmt::format(" ... and {} more", items.size() - kShown);
      msg += ";";
    };
    list(missing_, "missing");
    list(wrong_, "mismatched");
    raise(missing_.empty() ? ErrorKind::kCorruptData : ErrorKind::kNotFound, "{}", msg);
  }

 private:
  const Checkpoint& c_;
  std::vector<std::string> missing_, wrong_;
};

}  // namespace

ModelWeights bind_weights(const Checkpoint& checkpoint, const ModelConfig& c) {
  Binder b(checkpoint);
  ModelWeights w;
  const int64_t hidden = c.hidden_size, heads = c.num_attention_heads;
  w.embed = b.tensor("model.embed_tokens.weight", {DType::kBF16, DType::kF32}, {c.vocab_size, hidden});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    LayerWeights layer;
    layer.attn_norm = b.vector_f32(p + "input_layernorm.weight", hidden);
    layer.ffn_norm = b.vector_f32(p + "post_attention_layernorm.weight", hidden);
    AttentionWeights& a = layer.attn;
    const std::string ap = p + "self_attn.";
    if (c.q_lora_rank > 0) {
      a.q_a = b.linear(ap + "q_a_proj", c.q_lora_rank, hidden);
      a.q_a_norm = b.vector_f32(ap + "q_a_layernorm.weight", c.q_lora_rank);
      a.q_b = b.linear(ap + "q_b_proj", heads * c.qk_head_dim(), c.q_lora_rank);
    } else {
      a.q = b.linear(ap + "q_proj", heads * c.qk_head_dim(), hidden);
    }
    a.kv_a = b.linear(ap + "kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, hidden);
    a.kv_a_norm = b.vector_f32(ap + "kv_a_layernorm.weight", c.kv_lora_rank);
    a.kv_b = b.linear(ap + "kv_b_proj", heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
    a.o = b.linear(ap + "o_proj", hidden, heads * c.v_head_dim);
    layer.is_moe = c.is_moe_layer(l);
    if (!layer.is_moe) {
      layer.mlp = b.mlp(p + "mlp", hidden, c.intermediate_size);
    } else {
      MoeWeights& m = layer.moe;
      m.router = b.linear(p + "mlp.gate", c.n_routed_experts, hidden);
      if (c.topk_method == TopkMethod::kNoauxTc)
        m.score_bias = b.tensor(p + "mlp.gate.e_score_correction_bias", {DType::kF32}, {c.n_routed_experts});
      for (int64_t e = 0; e < c.n_routed_experts; ++e)
        m.experts.push_back(b.mlp(fmt::format("{}mlp.experts.{}", p, e), hidden, c.moe_intermediate_size));
      m.has_shared = c.n_shared_experts > 0;
      if (m.has_shared) m.shared = b.mlp(p + "mlp.shared_experts", hidden, c.n_shared_experts * c.moe_intermediate_size);
    }
    w.layers.push_back(std::move(layer));
  }
  w.final_norm = b.vector_f32("model.norm.weight", hidden);
  w.lm_head = b.linear("lm_head", c.vocab_size, hidden);
  b.finish();
  return w;
}

}  // namespace cachalot::model
