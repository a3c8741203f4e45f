#include "model/random_checkpoint.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "core/convert.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "core/thread_pool.h"
#include "gemm/quantize.h"

namespace cachalot::model {
namespace {

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t name_seed(const std::string& name, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (const char ch : name) h = (h ^ static_cast<uint8_t>(ch)) * 1099511628211ull;
  return h;
}

// Uniform in [-1, 1), `n` values from one stream.
void uniform(uint64_t stream, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int64_t>(splitmix(stream) >> 40) - (1 << 23)) / (1 << 23);
}

// Rows [N, K] of uniform(-a, a) values, each row its own stream, as F32 into `fill(row, values)`.
template <typename Fill>
void random_rows(const std::string& name, uint64_t seed, int64_t rows, int64_t cols, float a, Fill fill) {
  const uint64_t base = name_seed(name, seed);
  ThreadPool::global().parallel_for(0, rows, [&](int64_t r0, int64_t r1, int) {
    std::vector<float> v(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      uniform(base + static_cast<uint64_t>(r) * 0x632be59bd9b4e019ull, v.data(), cols);
      for (float& x : v) x *= a;
      fill(r, v.data());
    }
  });
}

Tensor random_bf16(const std::string& name, uint64_t seed, Dims shape, float a, float offset = 0.0f) {
  const int64_t cols = shape[shape.size() - 1], rows = shape.product() / cols;
  Tensor t = Tensor::empty(DType::kBF16, shape);
  random_rows(name, seed, rows, cols, a, [&](int64_t r, float* v) {
    for (int64_t c = 0; c < cols; ++c) v[c] += offset;
    convert(v, t.mutable_data<bf16>() + r * cols, static_cast<size_t>(cols));
  });
  return t;
}

// An FP8 weight [out, in] with its block scales: uniform values of variance 1/in, each 128x128
// block quantized with scale = amax / 448 (as the official conversion does).
std::pair<Tensor, Tensor> random_fp8(const std::string& name, uint64_t seed, int64_t out, int64_t in) {
  const float a = std::sqrt(3.0f / static_cast<float>(in));
  Tensor values = Tensor::empty(DType::kF32, {out, in});
  random_rows(name, seed, out, in, a, [&](int64_t r, float* v) { std::copy_n(v, in, values.mutable_data<float>() + r * in); });
  gemm::Fp8Tensor q = gemm::quantize_weights(values);
  return {q.data, q.scales};
}

class ShardedWriter {
 public:
  ShardedWriter(std::string dir, uint64_t seed, int64_t shards) : dir_(std::move(dir)), seed_(seed), shards_(shards) {}

  void linear(const std::string& prefix, int64_t out, int64_t in, bool fp8) {
    if (fp8) {
      auto [w, s] = random_fp8(prefix + ".weight", seed_, out, in);
      add(prefix + ".weight", w);
      add(prefix + ".weight_scale_inv", s);
    } else {
      add(prefix + ".weight", random_bf16(prefix + ".weight", seed_, {out, in}, std::sqrt(3.0f / in)));
    }
  }
  void norm(const std::string& name, int64_t n) { add(name, random_bf16(name, seed_, {n}, 0.05f, 1.0f)); }
  void add(const std::string& name, Tensor t) { writer_.add(name, std::move(t)), names_.push_back(name); }

  // Writes the tensors added since the last flush as the next shard.
  void flush() {
    const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", ++written_, shards_);
    summary_.bytes += writer_.write(dir_ + "/" + file);
    for (const auto& n : names_) map_[n] = file;
    summary_.tensors += static_cast<int64_t>(names_.size());
    summary_.shards = written_;
    writer_ = SafetensorsWriter();
    names_.clear();
  }
  WriteSummary finish() {
    write_checkpoint_index(dir_, map_, summary_.bytes);
    return summary_;
  }
  uint64_t seed() const { return seed_; }

 private:
  std::string dir_;
  uint64_t seed_;
  int64_t shards_, written_ = 0;
  SafetensorsWriter writer_;
  std::vector<std::string> names_;
  std::map<std::string, std::string> map_;
  WriteSummary summary_;
};

}  // namespace

std::vector<std::string> preset_names() { return {"tiny", "mini", "v3-slice"}; }

ModelConfig preset_config(const std::string& name) {
  ModelConfig c;
  c.scoring_func = ScoringFunc::kSigmoid;
  c.topk_method = TopkMethod::kNoauxTc;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.fp8_weights = true;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-6;
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  c.first_k_dense_replace = 1;
  c.n_shared_experts = 1;
  if (name == "tiny") {  // the tiny-dsv3 fixture's dimensions
    c.vocab_size = 1000, c.hidden_size = 256, c.intermediate_size = 512, c.moe_intermediate_size = 128;
    c.num_hidden_layers = 3, c.num_attention_heads = 4, c.q_lora_rank = 192, c.kv_lora_rank = 128;
    c.qk_nope_head_dim = 64, c.qk_rope_head_dim = 32, c.v_head_dim = 64;
    c.n_routed_experts = 16, c.num_experts_per_tok = 4, c.n_group = 4, c.topk_group = 2;
    c.max_position_embeddings = 1024;
    c.yarn = YarnScaling{4.0, 256, 32, 1, 1.0, 1.0};
  } else if (name == "mini") {
    c.vocab_size = 8192, c.hidden_size = 1024, c.intermediate_size = 2816, c.moe_intermediate_size = 256;
    c.num_hidden_layers = 4, c.num_attention_heads = 16, c.q_lora_rank = 384, c.kv_lora_rank = 256;
    c.qk_nope_head_dim = 64, c.qk_rope_head_dim = 32, c.v_head_dim = 64;
    c.n_routed_experts = 32, c.num_experts_per_tok = 4, c.n_group = 4, c.topk_group = 2;
    c.max_position_embeddings = 4096;
    c.yarn = YarnScaling{4.0, 1024, 32, 1, 1.0, 1.0};
  } else if (name == "v3-slice") {  // DeepSeek-V3's dimensions, 2 layers, 64 experts
    c.vocab_size = 32768, c.hidden_size = 7168, c.intermediate_size = 18432, c.moe_intermediate_size = 2048;
    c.num_hidden_layers = 2, c.num_attention_heads = 128, c.q_lora_rank = 1536, c.kv_lora_rank = 512;
    c.qk_nope_head_dim = 128, c.qk_rope_head_dim = 64, c.v_head_dim = 128;
    c.n_routed_experts = 64, c.num_experts_per_tok = 8, c.n_group = 8, c.topk_group = 4;
    c.max_position_embeddings = 163840;
    c.yarn = YarnScaling{40.0, 4096, 32, 1, 1.0, 1.0};
  } else {
    raise(ErrorKind::kInvalidArgument, "unknown preset '{}'; choose tiny, mini or v3-slice", name);
  }
  return c;
}

WriteSummary write_random_checkpoint(const ModelConfig& c, const std::string& dir, uint64_t seed) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) raise(ErrorKind::kIo, "cannot create {}: {}", dir, ec.message());
  {
    AtomicFileWriter out(dir + "/config.json");
    const std::string text = config_to_json(c).dump(2) + "\n";
    out.write(text.data(), text.size());
    out.commit();
  }
  // One shard for the embeddings, final norm and lm_head, then one per layer.
  ShardedWriter w(dir, seed, c.num_hidden_layers + 1);
  const bool fp8 = c.fp8_weights;
  const int64_t hidden = c.hidden_size, heads = c.num_attention_heads;
  w.add("model.embed_tokens.weight", random_bf16("model.embed_tokens.weight", seed, {c.vocab_size, hidden}, 1.0f));
  w.norm("model.norm.weight", hidden);
  w.linear("lm_head", c.vocab_size, hidden, false);
  w.flush();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    w.norm(p + "input_layernorm.weight", hidden);
    w.norm(p + "post_attention_layernorm.weight", hidden);
    if (c.q_lora_rank > 0) {
      w.linear(p + "self_attn.q_a_proj", c.q_lora_rank, hidden, fp8);
      w.norm(p + "self_attn.q_a_layernorm.weight", c.q_lora_rank);
      w.linear(p + "self_attn.q_b_proj", heads * c.qk_head_dim(), c.q_lora_rank, fp8);
    } else {
      w.linear(p + "self_attn.q_proj", heads * c.qk_head_dim(), hidden, fp8);
    }
    w.linear(p + "self_attn.kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, hidden, fp8);
    w.norm(p + "self_attn.kv_a_layernorm.weight", c.kv_lora_rank);
    w.linear(p + "self_attn.kv_b_proj", heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank, fp8);
    w.linear(p + "self_attn.o_proj", hidden, heads * c.v_head_dim, fp8);
    auto mlp = [&](const std::string& prefix, int64_t inter) {
      w.linear(prefix + ".gate_proj", inter, hidden, fp8);
      w.linear(prefix + ".up_proj", inter, hidden, fp8);
      w.linear(prefix + ".down_proj", hidden, inter, fp8);
    };
    if (!c.is_moe_layer(l)) {
      mlp(p + "mlp", c.intermediate_size);
    } else {
      w.add(p + "mlp.gate.weight",
            random_bf16(p + "mlp.gate.weight", seed, {c.n_routed_experts, hidden}, std::sqrt(3.0f / hidden)));
      if (c.topk_method == TopkMethod::kNoauxTc) {
        Tensor bias = Tensor::empty(DType::kF32, {c.n_routed_experts});
        random_rows(p + "mlp.gate.e_score_correction_bias", seed, 1, c.n_routed_experts, 0.05f,
                    [&](int64_t, float* v) { std::copy_n(v, c.n_routed_experts, bias.mutable_data<float>()); });
        w.add(p + "mlp.gate.e_score_correction_bias", bias);
      }
      for (int64_t e = 0; e < c.n_routed_experts; ++e) mlp(fmt::format("{}mlp.experts.{}", p, e), c.moe_intermediate_size);
      if (c.n_shared_experts > 0) mlp(p + "mlp.shared_experts", c.n_shared_experts * c.moe_intermediate_size);
    }
    w.flush();
  }
  return w.finish();
}

}  // namespace cachalot::model
