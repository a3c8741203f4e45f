#include "model/model.h"

#include <algorithm>

#include "core/convert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/trace.h"
#include "model/expert_parallel.h"

namespace cachalot::model {

Model::Model(ModelConfig config, ModelOptions options, Checkpoint checkpoint)
    : config_(std::move(config)), options_(options), checkpoint_(std::move(checkpoint)) {
  weights_ = bind_weights(checkpoint_, config_);
  trace::Span span("prepare_weights", "model");
  const Precision p = options_.precision;
  attention_.reserve(weights_.layers.size());
  moe_.resize(weights_.layers.size());
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    LayerWeights& layer = weights_.layers[l];
    attention_.emplace_back(config_, layer.attn, p, options_.attention_form);
    if (!layer.is_moe)
      prepare_mlp(layer.mlp, p);
    else if (options_.ep_ranks <= 1 && !options_.ep_transport)
      moe_[l] = MoeLayer(config_, layer.moe, p);
  }
  weights_.lm_head.prepare(p, /*keep_fp32_output=*/true);
  if (options_.ep_ranks > 1 || options_.ep_transport) ep_ = std::make_unique<ExpertParallelRunner>(*this);
}

void Model::follow() const {
  CACHALOT_CHECK_ARG(options_.ep_transport != nullptr, "follow(): the model was not loaded as an EP process rank");
  ep_->follow();
}

void Model::release_followers() const {
  if (ep_) ep_->release_followers();
}

void Model::set_expert_placement(const eplb::Placement& placement) const {
  CACHALOT_CHECK_ARG(ep_ != nullptr, "expert placement: the model runs without expert parallelism (--ep)");
  ep_->set_placement(placement);
}

eplb::Placement Model::expert_placement() const {
  CACHALOT_CHECK_ARG(ep_ != nullptr, "expert placement: the model runs without expert parallelism (--ep)");
  return ep_->placement();
}

int64_t Model::expert_placement_version() const { return ep_ ? ep_->placement_version() : 0; }

int Model::ep_ranks() const { return ep_ ? ep_->ranks() : 1; }

int Model::ep_nodes() const { return options_.ep_transport ? options_.ep_transport->num_nodes() : 1; }

Model::~Model() = default;

Tensor Model::embed(std::span<const SequenceStep> steps, int64_t rows) const {
  const int64_t hidden = config_.hidden_size;
  Tensor h = Tensor::empty(DType::kF32, {rows, hidden});
  int64_t r = 0;
  for (const SequenceStep& st : steps)
    for (const int32_t token : st.tokens) {
      CACHALOT_CHECK_ARG(token >= 0 && token < config_.vocab_size, "forward: token id {} is outside the vocabulary of {}",
                         token, config_.vocab_size);
      float* dst = h.mutable_data<float>() + r++ * hidden;
      if (weights_.embed.dtype() == DType::kBF16)
        convert(weights_.embed.data<bf16>() + token * hidden, dst, static_cast<size_t>(hidden));
      else
        std::copy_n(weights_.embed.data<float>() + token * hidden, hidden, dst);
    }
  round_activations(options_.precision, h);
  return h;
}

void Model::add_residual(Tensor& h, const Tensor& delta) const {
  float* hp = h.mutable_data<float>();
  for (int64_t i = 0; i < h.numel(); ++i) hp[i] += delta.data<float>()[i];
  round_activations(options_.precision, h);
}

Tensor Model::logits_of(const Tensor& h, const std::vector<int64_t>& picked) const {
  const int64_t hidden = config_.hidden_size;
  Tensor last = Tensor::empty(DType::kF32, {static_cast<int64_t>(picked.size()), hidden});
  for (size_t i = 0; i < picked.size(); ++i)
    rms_norm(h.data<float>() + picked[i] * hidden, weights_.final_norm.data<float>(), 1, hidden, config_.rms_norm_eps,
             last.mutable_data<float>() + static_cast<int64_t>(i) * hidden);
  round_activations(options_.precision, last);
  return weights_.lm_head.forward(last);
}

std::unique_ptr<Model> Model::load(const std::string& dir, const ModelOptions& options) {
  trace::Span span("load_model", "model");
  ModelConfig config = load_config(dir);
  Checkpoint checkpoint = Checkpoint::open(dir);
  log::info("loading {} ({} layers, hidden {}, {} experts) in {} mode", dir, config.num_hidden_layers,
            config.hidden_size, config.n_routed_experts, options.precision == Precision::kExact ? "exact" : "fast");
  return std::unique_ptr<Model>(new Model(std::move(config), options, std::move(checkpoint)));
}

int Model::attention_ranks() const { return ep_ ? ep_->attention_ranks() : 1; }

KvCache Model::make_kv_cache(int64_t num_blocks) const {
  const int ranks = attention_ranks();
  CACHALOT_CHECK_ARG(num_blocks >= 0 && num_blocks % ranks == 0,
                     "KV cache: {} blocks do not split evenly over the {} attention ranks", num_blocks, ranks);
  KvCache cache = make_partition(num_blocks / ranks);
  cache.partitions = ranks;
  if (ranks > 1) ep_->register_cache(cache);
  return cache;
}

KvCache Model::make_partition(int64_t num_blocks) const {
  mla::CacheConfig c{config_.kv_lora_rank, config_.qk_rope_head_dim,
                     options_.precision == Precision::kExact ? mla::KvFormat::kF32 : options_.kv_format};
  KvCache cache;
  cache.layers.reserve(static_cast<size_t>(config_.num_hidden_layers));
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) cache.layers.emplace_back(c, num_blocks);
  return cache;
}

int64_t Model::kv_bytes_per_token() const {
  mla::CacheConfig c{config_.kv_lora_rank, config_.qk_rope_head_dim,
                     options_.precision == Precision::kExact ? mla::KvFormat::kF32 : options_.kv_format};
  return c.token_bytes() * config_.num_hidden_layers;
}

ForwardOutput Model::forward(std::span<const SequenceStep> steps, KvCache& cache, const ForwardOptions& options) const {
  trace::Span span("forward", "model");
  CACHALOT_CHECK_ARG(!steps.empty(), "forward: empty batch");
  CACHALOT_CHECK_ARG(static_cast<int64_t>(cache.layers.size()) == config_.num_hidden_layers,
                     "forward: the KV cache has {} layers, the model {}", cache.layers.size(), config_.num_hidden_layers);
  const BatchLayout layout = make_layout(steps, config_.max_position_embeddings);
  for (int64_t s = 0; s < layout.sequences(); ++s)
    for (const int32_t b : layout.block_table[s].first((layout.row_pos[layout.seq_begin[s + 1] - 1] + 64) / 64))
      CACHALOT_CHECK_ARG(b >= 0 && b < cache.num_blocks(), "forward: sequence {} uses block {}, outside the cache's {}",
                         s, b, cache.num_blocks());
  span.arg("rows", layout.rows()).arg("sequences", layout.sequences());
  const Precision p = options_.precision;
  const int64_t rows = layout.rows(), hidden = config_.hidden_size;

  if (ep_) return ep_->forward(steps, layout, cache, options);
  Tensor h = embed(steps, rows);
  ForwardOutput out;
  Tensor x = Tensor::empty(DType::kF32, {rows, hidden});
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    trace::Span layer_span("layer", "model");
    layer_span.arg("layer", l);
    const LayerWeights& layer = weights_.layers[l];
    rms_norm(h.data<float>(), layer.attn_norm.data<float>(), rows, hidden, config_.rms_norm_eps, x.mutable_data<float>());
    round_activations(p, x);
    add_residual(h, attention_[l].forward(x, layout, cache.layers[l]));
    rms_norm(h.data<float>(), layer.ffn_norm.data<float>(), rows, hidden, config_.rms_norm_eps, x.mutable_data<float>());
    round_activations(p, x);
    if (layer.is_moe) {
      Routing routing;
      add_residual(h, moe_[l].forward(x, &routing));
      count_expert_tokens(routing, out.expert_tokens.emplace_back(static_cast<size_t>(config_.n_routed_experts), 0));
      if (options.record_routing) {
        auto& per_token = out.routing.emplace_back();
        for (int64_t r = 0; r < rows; ++r)
          per_token.emplace_back(routing.experts.begin() + r * routing.k, routing.experts.begin() + (r + 1) * routing.k);
      }
    } else {
      add_residual(h, mlp_forward(layer.mlp, x, p));
    }
  }

  // Final norm and lm_head on the rows whose logits are wanted.
  std::vector<int64_t> picked;
  if (options.all_logits) {
    for (int64_t r = 0; r < rows; ++r) picked.push_back(r);
  } else {
    for (int64_t s = 0; s < layout.sequences(); ++s) picked.push_back(layout.seq_begin[s + 1] - 1);
  }
  out.logits = logits_of(h, picked);
  return out;
}

}  // namespace cachalot::model
