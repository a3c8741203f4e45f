#include "model/expert_parallel.h"

#include <algorithm>
#include <numeric>

#include "core/convert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/trace.h"
#include "gemm/quantize.h"

namespace cachalot::model {

// Which sequences each rank runs, split into its micro-batches.
struct ExpertParallelRunner::Plan {
  std::vector<std::vector<std::vector<int64_t>>> micro;  // [rank][micro-batch] -> sequence indices
  int64_t chunks = 1;                                    // dispatch rounds per MoE layer
};

// A rank's micro-batch as it goes through the layers.
struct ExpertParallelRunner::MicroBatch {
  std::vector<int64_t> sequences;  // indices into the forward's steps
  std::vector<SequenceStep> steps;
  BatchLayout layout;
  int64_t rows = 0;
  Tensor h, x;                     // residual stream and the normalised input of the sublayer
  Routing routing;                 // this layer's
  gemm::Fp8Tensor xq;              // x quantized, when the experts take FP8
  Tensor y;                        // the MoE output being combined
  ep::PendingNormalDispatch dispatch;
  ep::PendingNormalCombine combine;
};

ExpertParallelRunner::ExpertParallelRunner(Model& model) : model_(model), ranks_(model.options_.ep_ranks) {
  const ModelConfig& c = model.config_;
  CACHALOT_CHECK_ARG(ranks_ >= 1 && ranks_ <= 64, "--ep: {} ranks; between 1 and 64 are supported", ranks_);
  CACHALOT_CHECK_ARG(c.n_routed_experts % ranks_ == 0, "--ep {}: the model's {} routed experts do not split evenly over {} ranks",
                     ranks_, c.n_routed_experts, ranks_);
  const int64_t per = c.n_routed_experts / ranks_;
  log2phy_.resize(static_cast<size_t>(c.n_routed_experts));
  std::iota(log2phy_.begin(), log2phy_.end(), 0);
  shards_.resize(static_cast<size_t>(ranks_));
  for (int r = 0; r < ranks_; ++r) {
    shards_[r].resize(model.weights_.layers.size());
    for (size_t l = 0; l < model.weights_.layers.size(); ++l)
      if (model.weights_.layers[l].is_moe)
        shards_[r][l] = MoeLayer(c, model.weights_.layers[l].moe, model.options_.precision, {r * per, per});
  }
  start_group();
  log::info("expert parallelism: {} ranks of {} routed experts each, {} micro-batch{} per rank", ranks_, per,
            model.options_.ep_overlap ? 2 : 1, model.options_.ep_overlap ? "es" : "");
}

ExpertParallelRunner::~ExpertParallelRunner() = default;

void ExpertParallelRunner::start_group() {
  const ModelConfig& c = model_.config_;
  ep::TransportOptions o;
  // Exact mode moves F32 both ways; one chunk of every rank must fit each rank's slot.
  o.slot_bytes = ep::Buffer::normal_slot_bytes(ranks_, kDispatchChunkTokens, c.hidden_size, c.num_experts_per_tok, 4, 4);
  o.timeout = std::chrono::seconds(100);
  buffers_.clear();
  buffers_.resize(static_cast<size_t>(ranks_));
  group_ = std::make_unique<ep::LocalRanks>(ranks_, o);
}

ForwardOutput ExpertParallelRunner::forward(std::span<const SequenceStep> steps, const BatchLayout& layout, KvCache& cache,
                                            const ForwardOptions& options) {
  trace::Span span("ep_forward", "model");
  // Sequences to the rank with the fewest new tokens so far (ties: lowest rank).
  Plan plan;
  plan.micro.assign(static_cast<size_t>(ranks_), {});
  std::vector<int64_t> load(static_cast<size_t>(ranks_), 0);
  std::vector<std::vector<int64_t>> mine(static_cast<size_t>(ranks_));
  for (int64_t s = 0; s < layout.sequences(); ++s) {
    const auto r = std::min_element(load.begin(), load.end()) - load.begin();
    mine[r].push_back(s);
    load[r] += layout.seq_begin[s + 1] - layout.seq_begin[s];
  }
  const int micro = model_.options_.ep_overlap ? 2 : 1;
  int64_t largest = 0;
  for (int r = 0; r < ranks_; ++r) {
    auto& parts = plan.micro[r];
    parts.assign(static_cast<size_t>(micro), {});
    int64_t taken = 0;
    for (const int64_t s : mine[r]) {
      // The first micro-batch takes sequences until it holds half of the rank's tokens.
      const int part = micro == 2 && !parts[0].empty() && 2 * taken >= load[r] ? 1 : 0;
      parts[part].push_back(s);
      if (part == 0) taken += layout.seq_begin[s + 1] - layout.seq_begin[s];
    }
    for (const auto& p : parts) {
      int64_t rows = 0;
      for (const int64_t s : p) rows += layout.seq_begin[s + 1] - layout.seq_begin[s];
      largest = std::max(largest, rows);
    }
  }
  plan.chunks = std::max<int64_t>(1, (largest + kDispatchChunkTokens - 1) / kDispatchChunkTokens);
  span.arg("chunks", plan.chunks);

  ForwardOutput out;
  const int64_t picked = options.all_logits ? layout.rows() : layout.sequences();
  out.logits = Tensor::empty(DType::kF32, {picked, model_.config_.vocab_size});
  if (options.record_routing)
    for (const LayerWeights& l : model_.weights_.layers)
      if (l.is_moe) out.routing.emplace_back(static_cast<size_t>(layout.rows()));
  try {
    group_->run([&](ep::Transport& t) { run_rank(t, plan, steps, layout, cache, options, out); });
  } catch (...) {
    // A failed rank leaves the group's rounds out of step: start a fresh one for the next call.
    start_group();
    throw;
  }
  return out;
}

void ExpertParallelRunner::run_rank(ep::Transport& t, const Plan& plan, std::span<const SequenceStep> steps,
                                    const BatchLayout& layout, KvCache& cache, const ForwardOptions& options,
                                    ForwardOutput& out) {
  const int rank = t.rank();
  if (!buffers_[rank]) buffers_[rank] = std::make_unique<ep::Buffer>(t);
  ep::Buffer& buffer = *buffers_[rank];
  const ModelConfig& c = model_.config_;
  const Precision p = model_.options_.precision;
  const int64_t hidden = c.hidden_size;

  std::vector<MicroBatch> mbs(plan.micro[rank].size());
  for (size_t i = 0; i < mbs.size(); ++i) {
    MicroBatch& mb = mbs[i];
    mb.sequences = plan.micro[rank][i];
    for (const int64_t s : mb.sequences) mb.steps.push_back(steps[s]);
    if (mb.steps.empty()) continue;
    mb.layout = make_layout(mb.steps, c.max_position_embeddings);
    mb.rows = mb.layout.rows();
    mb.h = model_.embed(mb.steps, mb.rows);
    mb.x = Tensor::empty(DType::kF32, {mb.rows, hidden});
  }

  auto norm = [&](MicroBatch& mb, const Tensor& weight) {
    rms_norm(mb.h.data<float>(), weight.data<float>(), mb.rows, hidden, c.rms_norm_eps, mb.x.mutable_data<float>());
    round_activations(p, mb.x);
  };
  int64_t moe_index = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    trace::Span layer_span("layer", "model");
    layer_span.arg("layer", l).arg("rank", rank);
    const LayerWeights& layer = model_.weights_.layers[l];
    if (!layer.is_moe) {
      for (MicroBatch& mb : mbs) {
        if (mb.rows == 0) continue;
        norm(mb, layer.attn_norm);
        model_.add_residual(mb.h, model_.attention_[l].forward(mb.x, mb.layout, cache.layers[l]));
        norm(mb, layer.ffn_norm);
        model_.add_residual(mb.h, mlp_forward(layer.mlp, mb.x, p));
      }
      continue;
    }
    moe_layer(buffer, rank, l, plan.chunks, mbs, cache.layers[l]);
    if (options.record_routing) {
      for (const MicroBatch& mb : mbs) {
        int64_t local = 0;
        for (size_t i = 0; i < mb.sequences.size(); ++i) {
          const int64_t s = mb.sequences[i], n = layout.seq_begin[s + 1] - layout.seq_begin[s];
          for (int64_t j = 0; j < n; ++j, ++local) {
            const auto first = mb.routing.experts.begin() + local * mb.routing.k;
            out.routing[moe_index][layout.seq_begin[s] + j].assign(first, first + mb.routing.k);
          }
        }
      }
    }
    ++moe_index;
  }

  // Logits of this rank's rows, written straight into their places (ranks own disjoint rows).
  for (const MicroBatch& mb : mbs) {
    if (mb.rows == 0) continue;
    std::vector<int64_t> picked, dest;
    for (int64_t i = 0; i < mb.layout.sequences(); ++i) {
      const int64_t s = mb.sequences[i];
      for (int64_t r = options.all_logits ? mb.layout.seq_begin[i] : mb.layout.seq_begin[i + 1] - 1;
           r < mb.layout.seq_begin[i + 1]; ++r) {
        picked.push_back(r);
        dest.push_back(options.all_logits ? layout.seq_begin[s] + (r - mb.layout.seq_begin[i]) : s);
      }
    }
    const Tensor logits = model_.logits_of(mb.h, picked);
    const int64_t vocab = logits.size(1);
    for (size_t i = 0; i < dest.size(); ++i)
      std::copy_n(logits.data<float>() + static_cast<int64_t>(i) * vocab, vocab,
                  out.logits.mutable_data<float>() + dest[i] * vocab);
  }
}

void ExpertParallelRunner::moe_layer(ep::Buffer& buffer, int rank, int64_t l, int64_t chunks, std::vector<MicroBatch>& mbs,
                                     mla::PagedKvCache& layer_cache) const {
  const ModelConfig& c = model_.config_;
  const Precision p = model_.options_.precision;
  const LayerWeights& layer = model_.weights_.layers[l];
  const MoeLayer& shard = shards_[rank][l];
  const int64_t hidden = c.hidden_size, k = c.num_experts_per_tok;
  const bool fp8 = shard.takes_fp8();
  auto norm = [&](MicroBatch& mb, const Tensor& weight) {
    rms_norm(mb.h.data<float>(), weight.data<float>(), mb.rows, hidden, c.rms_norm_eps, mb.x.mutable_data<float>());
    round_activations(p, mb.x);
  };

  // Posts micro-batch mb's dispatch of rows [chunk * kDispatchChunkTokens, ...).
  auto post_dispatch = [&](MicroBatch& mb, int64_t chunk) {
    const int64_t lo = std::min(mb.rows, chunk * kDispatchChunkTokens), hi = std::min(mb.rows, lo + kDispatchChunkTokens);
    const int64_t n = hi - lo;
    Tensor topk = Tensor::empty(DType::kI32, {n, k}), weights = Tensor::empty(DType::kF32, {n, k});
    for (int64_t i = 0; i < n * k; ++i) {
      topk.mutable_data<int32_t>()[i] = log2phy_[mb.routing.experts[lo * k + i]];
      weights.mutable_data<float>()[i] = mb.routing.weights[lo * k + i];
    }
    const ep::DispatchLayout dl = buffer.get_dispatch_layout(topk, c.n_routed_experts);
    if (fp8 && n > 0)
      mb.dispatch = buffer.dispatch_async(mb.xq.data.slice(0, lo, hi), mb.xq.scales.slice(0, lo, hi), topk, weights, dl);
    else if (fp8)
      mb.dispatch = buffer.dispatch_async(Tensor::empty(DType::kF8E4M3, {0, hidden}),
                                          Tensor::empty(DType::kF32, {0, gemm::ceil_div(hidden, 128)}), topk, weights, dl);
    else
      mb.dispatch = buffer.dispatch_async(n > 0 ? mb.x.slice(0, lo, hi) : Tensor::empty(DType::kF32, {0, hidden}), Tensor(),
                                          topk, weights, dl);
  };
  // Receives mb's dispatch, runs the held experts and posts the combine.
  auto run_experts = [&](MicroBatch& mb) {
    ep::DispatchResult recv = mb.dispatch.receive();
    trace::Span span("experts", "model");
    span.arg("rows", recv.x.size(0));
    Routing local;
    local.k = k;
    local.experts.assign(recv.topk_idx.data<int32_t>(), recv.topk_idx.data<int32_t>() + recv.topk_idx.numel());
    local.weights.assign(recv.topk_weights.data<float>(), recv.topk_weights.data<float>() + recv.topk_weights.numel());
    Tensor out = fp8 ? shard.experts_forward(recv.x, recv.scales, local) : shard.experts_forward(recv.x, local);
    if (p == Precision::kFast) {
      // DeepSeek combines in BF16.
      Tensor b = Tensor::empty(DType::kBF16, out.shape());
      convert(out.data<float>(), b.mutable_data<bf16>(), static_cast<size_t>(out.numel()));
      out = b;
    }
    mb.combine = buffer.combine_async(out, recv.handle);
  };

  // Attention and routing; with two micro-batches and one chunk, the first one's dispatch goes
  // out before the second one attends.
  const bool early = mbs.size() > 1 && chunks == 1;
  for (size_t i = 0; i < mbs.size(); ++i) {
    MicroBatch& mb = mbs[i];
    mb.routing = Routing{k, {}, {}};
    if (mb.rows > 0) {
      norm(mb, layer.attn_norm);
      model_.add_residual(mb.h, model_.attention_[l].forward(mb.x, mb.layout, layer_cache));
      norm(mb, layer.ffn_norm);
      mb.routing = shard.route_tokens(mb.x);
      if (fp8) mb.xq = gemm::quantize_activations(mb.x);
    }
    if (i == 0 && early) post_dispatch(mb, 0);
  }
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    for (size_t i = 0; i < mbs.size(); ++i)
      if (!(early && i == 0)) post_dispatch(mbs[i], chunk);
    for (MicroBatch& mb : mbs) run_experts(mb);
    const bool last = chunk == chunks - 1;
    for (MicroBatch& mb : mbs) {
      if (chunk == 0) mb.y = Tensor::zeros(DType::kF32, {mb.rows, hidden});
      // The shared experts run while this micro-batch's combine is still in flight.
      const Tensor shared = last && mb.rows > 0 ? shard.shared_forward(mb.x) : Tensor();
      const Tensor part = mb.combine.receive();
      const int64_t lo = std::min(mb.rows, chunk * kDispatchChunkTokens);
      CACHALOT_ASSERT(part.size(0) == std::min(mb.rows - lo, kDispatchChunkTokens));
      std::copy_n(part.data<float>(), part.numel(), mb.y.mutable_data<float>() + lo * hidden);
      if (!last || mb.rows == 0) continue;
      if (shared.defined() && shared.numel() > 0) {
        float* y = mb.y.mutable_data<float>();
        for (int64_t i = 0; i < mb.y.numel(); ++i) y[i] += shared.data<float>()[i];
      }
      round_activations(p, mb.y);
      model_.add_residual(mb.h, mb.y);
    }
  }
}

}  // namespace cachalot::model
