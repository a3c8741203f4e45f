// `cachalot bench model`: the whole model on a random v3-slice checkpoint (DeepSeek-V3's
// dimensions, 2 layers; written by `cachalot init` on first use, or --model DIR): prefill
// tokens/s for 1k-token prompts (batch 1 and 8) and decode tokens/s at batch 1, 8, 32, 64 over
// 1k-token contexts. Beside each, the roofline of this machine measured in the same run: the
// bytes a step must read (weights it touches, experts counted by the step's own routing, plus
// the KV cache) over the read bandwidth probe, and its FLOPs over the BF16 dot-product peak;
// ratio = our tokens/s over the roofline's. Attention counts the FLOPs of the cheaper MLA form
// (attention_cost.h: expanded for prompts, absorbed for decode), as the model runs it.
#include <chrono>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "bench/bandwidth_probe.h"
#include "bench/bench_models.h"
#include "bench/benches.h"
#include "bench/bf16_peak.h"
#include "core/log.h"
#include "model/attention_cost.h"
#include "model/model.h"
#include "model/random_checkpoint.h"

namespace cachalot::bench {
namespace {

using model::Model;

std::string ensure_model(const Options& options) {
  if (!options.model_dir.empty()) return options.model_dir;
  return ensure_preset_checkpoint(options.quick ? "mini" : "v3-slice");
}

// Weight bytes a forward reads once whatever its batch (everything but the routed experts), and
// the bytes of one routed expert of each MoE layer.
struct WeightBytes {
  double fixed = 0;
  double expert = 0;
};

WeightBytes weight_bytes(const Model& m) {
  WeightBytes b;
  const auto& w = m.weights();
  auto mlp = [](const model::MlpWeights& x) {
    return static_cast<double>(x.gate.weight_bytes() + x.up.weight_bytes() + x.down.weight_bytes());
  };
  for (const auto& l : w.layers) {
    const auto& a = l.attn;
    for (const model::Linear* lin : {&a.q_a, &a.q_b, &a.q, &a.kv_a, &a.o})
      if (lin->weight().defined()) b.fixed += static_cast<double>(lin->weight_bytes());
    b.fixed += 2.0 * static_cast<double>(a.kv_b.weight().numel());  // W_UK and W_UV in BF16
    if (!l.is_moe) {
      b.fixed += mlp(l.mlp);
    } else {
      b.fixed += static_cast<double>(l.moe.router.weight_bytes()) + (l.moe.has_shared ? mlp(l.moe.shared) : 0.0);
      b.expert = mlp(l.moe.experts[0]);
    }
  }
  b.fixed += static_cast<double>(w.lm_head.weight_bytes());
  return b;
}

// FLOPs of one token's projections and experts, without attention (attention_flops: its
// latent projections and the products over the cache) and without lm_head.
double token_flops(const model::ModelConfig& c) {
  const double h = static_cast<double>(c.hidden_size), heads = static_cast<double>(c.num_attention_heads);
  double per_layer_attn = 0;
  per_layer_attn += c.q_lora_rank > 0 ? h * c.q_lora_rank + static_cast<double>(c.q_lora_rank) * heads * c.qk_head_dim()
                                      : h * heads * c.qk_head_dim();
  per_layer_attn += h * (c.kv_lora_rank + c.qk_rope_head_dim);
  per_layer_attn += heads * c.v_head_dim * h;                                       // o_proj
  double total = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    total += per_layer_attn;
    total += c.is_moe_layer(l)
                 ? 3.0 * h * c.moe_intermediate_size * (c.num_experts_per_tok + c.n_shared_experts) +
                       h * c.n_routed_experts
                 : 3.0 * h * c.intermediate_size;
  }
  return 2.0 * total;
}

// Attention FLOPs of a sequence's `queries` new tokens after which it holds `keys`, in all
// layers, in the cheaper of MLA's two forms (what the model runs by default).
double attention_flops(const model::ModelConfig& c, int64_t queries, int64_t keys) {
  return static_cast<double>(c.num_hidden_layers) *
         model::attention_flops(c, model::cheaper_attention_form(c, queries, keys), queries, keys);
}

double lm_head_flops(const model::ModelConfig& c) { return 2.0 * c.hidden_size * c.vocab_size; }

// Distinct experts each MoE layer's routing touched.
double experts_touched(const model::ForwardOutput& out) {
  double n = 0;
  for (const auto& layer : out.routing) {
    std::set<int32_t> s;
    for (const auto& token : layer) s.insert(token.begin(), token.end());
    n += static_cast<double>(s.size());
  }
  return n;
}

}  // namespace

void run_model(const Options& options, Reporter& reporter) {
  const bool quick = options.quick;
  const std::string dir = ensure_model(options);
  const auto m = Model::load(dir);
  const auto& c = m->config();
  const double bw = read_bandwidth_gbs(static_cast<size_t>(dram_working_set_bytes()), quick ? 3 : 7) * 1e9;
  const double peak = bf16_peak_flops(quick ? 3 : 5);
  const WeightBytes wb = weight_bytes(*m);
  const double kv_token_bytes = static_cast<double>(m->kv_bytes_per_token());
  const std::string model_name = std::filesystem::path(dir).filename().string();
  // Roofline seconds of a step reading `bytes` and computing `flops`.
  auto roofline_s = [&](double bytes, double flops) { return std::max(bytes / bw, peak > 0 ? flops / peak : 0.0); };

  // Prefill: `batch` prompts of `len` tokens in one forward.
  const int64_t prompt_len = quick ? 128 : 1024;
  for (const int64_t batch : quick ? std::vector<int64_t>{1, 2} : std::vector<int64_t>{1, 8}) {
    PromptBatch prompts = make_prompt_batch(*m, batch, prompt_len, 7);
    const auto t0 = std::chrono::steady_clock::now();
    const model::ForwardOutput out = m->forward(prompts.steps, prompts.cache, {.record_routing = true});
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tokens = static_cast<double>(batch * prompt_len);
    const double flops = tokens * token_flops(c) + batch * lm_head_flops(c) +
                         batch * attention_flops(c, prompt_len, prompt_len);
    const double bytes = wb.fixed + wb.expert * experts_touched(out);
    const double roof = roofline_s(bytes, flops);
    const std::string name = fmt::format("{} prefill batch={} prompt={}", model_name, batch, prompt_len);
    reporter.add(make_result("model", name, "prefill_throughput", tokens / s, "tokens/s", "roofline", tokens / roof, false));
    reporter.add(make_result("model", name, "compute", flops / s / 1e12, "TFLOPS", "bf16-peak", peak / 1e12, false));
  }

  // Decode: `batch` sequences with `ctx` cached tokens each, one new token per step.
  const int64_t ctx = quick ? 256 : 1024;
  for (const int64_t batch : quick ? std::vector<int64_t>{1, 8} : std::vector<int64_t>{1, 8, 32, 64}) {
    model::ForwardOutput out;
    const double s = decode_step_seconds(*m, batch, ctx, quick ? 1.0 : 4.0, quick ? 5 : 15, &out);
    const double flops = batch * (token_flops(c) + lm_head_flops(c) + attention_flops(c, 1, ctx + 1));
    const double bytes = wb.fixed + wb.expert * experts_touched(out) + batch * (ctx + 1.0) * kv_token_bytes;
    const double roof = roofline_s(bytes, flops);
    const std::string name = fmt::format("{} decode batch={} context={}", model_name, batch, ctx);
    reporter.add(make_result("model", name, "decode_throughput", batch / s, "tokens/s", "roofline", batch / roof, false));
    reporter.add(make_result("model", name, "read_bandwidth", bytes / s / 1e9, "GB/s", "read-probe", bw / 1e9, false));
  }
}

}  // namespace cachalot::bench
