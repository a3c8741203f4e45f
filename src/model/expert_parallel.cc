#include "model/expert_parallel.h"

#include <algorithm>
#include <numeric>

#include "core/convert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/trace.h"
#include "ep/collectives.h"
#include "gemm/quantize.h"

namespace cachalot::model {
namespace {

// Received rows are used where the senders wrote them (shm/local ranks): the experts read them
// before this micro-batch's combine reuses the slot.
constexpr ep::DispatchOptions kInPlace{.in_place = true};

// DeepSeek combines in BF16 (fast mode).
Tensor to_bf16(const Tensor& x) {
  Tensor b = Tensor::empty(DType::kBF16, x.shape());
  convert(x.data<float>(), b.mutable_data<bf16>(), static_cast<size_t>(x.numel()));
  return b;
}

}  // namespace

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
  Tensor topk_weights;             // low-latency mode: combine weights them at the origin
  ep::PendingDispatch ll_dispatch;
  ep::PendingCombine ll_combine;
};

ExpertParallelRunner::ExpertParallelRunner(Model& model)
    : model_(model), ranks_(model.options_.ep_ranks), transport_(model.options_.ep_transport) {
  if (transport_) ranks_ = transport_->world_size();
  const ModelConfig& c = model.config_;
  check_expert_parallel(c, ranks_);
  int64_t moe_layers = 0;
  for (const LayerWeights& l : model.weights_.layers) moe_index_.push_back(l.is_moe ? moe_layers++ : -1);
  // The identity placement: slot e holds expert e.
  const auto identity = std::make_shared<const eplb::Placement>(
      eplb::identity_placement(std::max<int64_t>(moe_layers, 1), c.n_routed_experts));
  active_.resize(static_cast<size_t>(ranks_));
  for (int r = 0; r < ranks_; ++r)
    if (!transport_ || r == transport_->rank()) active_[r] = build_rank_experts(r, identity, 0);  // a process: its own
  buffers_.resize(static_cast<size_t>(ranks_));
  if (!transport_) start_group();
  log::info("expert parallelism: {} ranks of {} routed experts each, {} micro-batch{} per rank", ranks_,
            c.n_routed_experts / ranks_, model.options_.ep_overlap ? 2 : 1, model.options_.ep_overlap ? "es" : "");
}

ExpertParallelRunner::~ExpertParallelRunner() {
  {
    std::lock_guard lock(placement_mutex_);
    if (pending_ && pending_->builder.joinable()) pending_->builder.join();
  }
  try {
    release_followers();
  } catch (const std::exception& e) {
    log::warn("expert parallelism: could not release the other ranks: {}", e.what());
  }
}

std::shared_ptr<const ExpertParallelRunner::RankExperts> ExpertParallelRunner::build_rank_experts(
    int rank, std::shared_ptr<const eplb::Placement> placement, int64_t version) const {
  auto experts = std::make_shared<RankExperts>();
  experts->version = version;
  const int64_t per = placement->physical / ranks_;
  experts->layers.resize(model_.weights_.layers.size());
  for (size_t l = 0; l < model_.weights_.layers.size(); ++l) {
    if (moe_index_[l] < 0) continue;
    const auto first = placement->phy2log.begin() + moe_index_[l] * placement->physical + rank * per;
    experts->layers[l] = MoeLayer(model_.config_, model_.weights_.layers[l].moe, model_.options_.precision,
                                  std::vector<int32_t>(first, first + per));
  }
  experts->placement = std::move(placement);
  return experts;
}

void ExpertParallelRunner::set_placement(const eplb::Placement& placement) {
  CACHALOT_CHECK_ARG(!transport_ || transport_->rank() == 0, "set_placement on EP rank {}: rank 0 decides",
                     transport_ ? transport_->rank() : 0);
  const ModelConfig& c = model_.config_;
  const int64_t moe_layers = std::count_if(moe_index_.begin(), moe_index_.end(), [](int64_t i) { return i >= 0; });
  CACHALOT_CHECK_ARG(placement.layers == moe_layers && placement.logical == c.n_routed_experts,
                     "expert placement: {} layers x {} experts, the model has {} MoE layers x {} routed experts",
                     placement.layers, placement.logical, moe_layers, c.n_routed_experts);
  CACHALOT_CHECK_ARG(placement.physical % ranks_ == 0, "expert placement: {} slots do not split over {} ranks",
                     placement.physical, ranks_);
  // Normalised through its slots, so every rank derives the same replica order.
  auto normalised = std::make_shared<const eplb::Placement>(
      eplb::placement_from_slots(placement.phy2log, placement.layers, placement.logical));
  std::lock_guard lock(placement_mutex_);
  if (pending_)
    raise(ErrorKind::kResourceExhausted, "expert placement: version {} is still being applied", pending_->version);
  begin_placement(std::move(normalised), active_[0]->version + 1);
}

void ExpertParallelRunner::begin_placement(std::shared_ptr<const eplb::Placement> placement, int64_t version) {
  pending_ = std::make_unique<PendingPlacement>();
  pending_->version = version;
  pending_->placement = placement;
  pending_->built.resize(static_cast<size_t>(ranks_));
  PendingPlacement* p = pending_.get();
  // In the background: forwards go on with the old placement meanwhile.
  p->builder = std::thread([this, p] {
    for (int r = 0; r < ranks_; ++r)
      if (!transport_ || r == transport_->rank()) p->built[r] = build_rank_experts(r, p->placement, p->version);
    p->ready.store(true, std::memory_order_release);
  });
  log::info("expert placement {}: preparing {} slots per rank", version, placement->physical / ranks_);
}

int64_t ExpertParallelRunner::ready_version(int rank) {
  std::lock_guard lock(placement_mutex_);
  if (pending_ && pending_->ready.load(std::memory_order_acquire)) return pending_->version;
  return active_[rank]->version;
}

void ExpertParallelRunner::switch_placement(int rank, int64_t version) {
  std::lock_guard lock(placement_mutex_);
  if (version <= active_[rank]->version) return;
  CACHALOT_ASSERT(pending_ && pending_->version == version && pending_->ready.load());
  active_[rank] = pending_->built[rank];
  // The last of this process's ranks to switch retires the pending change.
  if (++pending_->switched == (transport_ ? 1 : ranks_)) {
    pending_->builder.join();
    pending_.reset();
    if (rank == 0 || transport_) log::info("expert placement {} in use", version);
  }
}

eplb::Placement ExpertParallelRunner::placement() const {
  std::lock_guard lock(placement_mutex_);
  return *active_[transport_ ? transport_->rank() : 0]->placement;
}

int64_t ExpertParallelRunner::placement_version() const {
  std::lock_guard lock(placement_mutex_);
  return active_[transport_ ? transport_->rank() : 0]->version;
}

int32_t ExpertParallelRunner::physical_slot(const eplb::Placement& p, int64_t moe, int32_t expert, int64_t pick) {
  return p.slot_of(moe, expert, pick % p.replicas(moe, expert));
}

void check_expert_parallel(const ModelConfig& c, int ranks) {
  CACHALOT_CHECK_ARG(ranks >= 1 && ranks <= ep::kMaxRanks, "--ep: {} ranks; between 1 and {} are supported", ranks,
                     ep::kMaxRanks);
  CACHALOT_CHECK_ARG(c.n_routed_experts % ranks == 0, "--ep {}: the model's {} routed experts do not split evenly over {} ranks",
                     ranks, c.n_routed_experts, ranks);
}

ep::TransportOptions expert_parallel_transport_options(const ModelConfig& c, int ranks, int nodes) {
  ep::TransportOptions o;
  o.slot_bytes = std::max(
      ep::Buffer::normal_slot_bytes(ranks, kDispatchChunkTokens, c.hidden_size, c.num_experts_per_tok, 4, 4, nodes),
      // Up to k slots per rank (EPLB may give a rank more than E / ranks slots).
      std::max(ep::Buffer::low_latency_slot_bytes(ranks, kLowLatencyMaxTokens, c.hidden_size, c.num_experts_per_tok,
                                                  c.num_experts_per_tok),
               // FP8 decode dispatches in place (the masked layout in the slot) and combines zero
               // copy (the experts' outputs after it, F32 at most) when it fits: with E / ranks
               // local experts; EPLB replicas beyond that fall back to messages.
               ep::Buffer::low_latency_zero_copy_slot_bytes(ranks, kLowLatencyMaxTokens, c.hidden_size,
                                                            c.n_routed_experts / ranks, 1, 4)));
  o.timeout = std::chrono::seconds(100);
  return o;
}

void ExpertParallelRunner::start_group() {
  buffers_.clear();
  buffers_.resize(static_cast<size_t>(ranks_));
  group_ = std::make_unique<ep::LocalRanks>(ranks_, expert_parallel_transport_options(model_.config_, ranks_));
}

ForwardOutput ExpertParallelRunner::empty_output(const BatchLayout& layout, const ForwardOptions& options) const {
  ForwardOutput out;
  const int64_t picked = options.all_logits ? layout.rows() : layout.sequences();
  out.logits = Tensor::empty(DType::kF32, {picked, model_.config_.vocab_size});
  if (options.record_routing)
    for (const LayerWeights& l : model_.weights_.layers)
      if (l.is_moe) out.routing.emplace_back(static_cast<size_t>(layout.rows()));
  return out;
}

ep::Buffer& ExpertParallelRunner::buffer_of(ep::Transport& t) {
  std::unique_ptr<ep::Buffer>& b = buffers_[static_cast<size_t>(t.rank())];
  if (!b) b = std::make_unique<ep::Buffer>(t);
  return *b;
}

ForwardOutput ExpertParallelRunner::forward(std::span<const SequenceStep> steps, const BatchLayout& layout, KvCache& cache,
                                            const ForwardOptions& options) {
  trace::Span span("ep_forward", "model");
  if (transport_) {
    CACHALOT_CHECK_ARG(transport_->rank() == 0, "forward on EP rank {}: only rank 0 drives; the others call follow()",
                       transport_->rank());
    const std::vector<std::byte> plan = pack(make_plan(steps, cache, options));
    send_command(kCommandForward);
    return process_forward_guarded(plan, &cache);
  }
  // Threads: sequences to the rank with the fewest new tokens so far (ties: lowest rank).
  std::vector<int64_t> load(static_cast<size_t>(ranks_), 0);
  std::vector<std::vector<int64_t>> mine(static_cast<size_t>(ranks_));
  for (int64_t s = 0; s < layout.sequences(); ++s) {
    const auto r = std::min_element(load.begin(), load.end()) - load.begin();
    mine[r].push_back(s);
    load[r] += layout.seq_begin[s + 1] - layout.seq_begin[s];
  }
  ForwardOutput out = empty_output(layout, options);
  std::vector<RankOutput> parts(static_cast<size_t>(ranks_));
  try {
    group_->run([&](ep::Transport& t) { parts[t.rank()] = run_rank(t, mine[t.rank()], steps, layout, cache, options); });
    for (const RankOutput& part : parts) place(part, model_.config_.num_experts_per_tok, out);
  } catch (...) {
    // A failed rank leaves the group's rounds out of step: start a fresh one for the next call.
    start_group();
    throw;
  }
  return out;
}

void ExpertParallelRunner::register_cache(KvCache& cache) {
  CACHALOT_CHECK_ARG(transport_ && transport_->rank() == 0, "register_cache: only rank 0 of a process group makes caches");
  auto id = std::make_shared<const int64_t>(next_cache_id_++);
  std::erase_if(caches_, [](const std::weak_ptr<const int64_t>& c) { return c.expired(); });
  caches_.push_back(id);
  cache.ep_id = std::move(id);
}

ForwardPlan ExpertParallelRunner::make_plan(std::span<const SequenceStep> steps, const KvCache& cache,
                                            const ForwardOptions& options) {
  CACHALOT_CHECK_ARG(cache.ep_id && cache.partitions == ranks_,
                     "forward: with EP ranks as processes the KV cache must come from this model's make_kv_cache");
  ForwardPlan plan;
  plan.cache_id = *cache.ep_id;
  plan.blocks_per_rank = cache.blocks_per_partition();
  std::erase_if(caches_, [](const std::weak_ptr<const int64_t>& c) { return c.expired(); });
  for (const auto& c : caches_) plan.live_caches.push_back(*c.lock());
  plan.options = options;
  {
    // A new expert placement travels with the next plan; each rank then prepares its slots.
    std::lock_guard lock(placement_mutex_);
    if (pending_ && !pending_->announced) {
      pending_->announced = true;
      plan.placement_version = pending_->version;
      plan.placement_slots = pending_->placement->phy2log;
    }
  }
  const int64_t per = plan.blocks_per_rank;
  for (size_t s = 0; s < steps.size(); ++s) {
    const SequenceStep& step = steps[s];
    const int64_t needed = (step.start + static_cast<int64_t>(step.tokens.size()) + mla::kBlockTokens - 1) / mla::kBlockTokens;
    const auto owner = static_cast<int32_t>(step.block_table[0] / per);
    std::vector<int32_t> local;
    for (const int32_t b : step.block_table.first(static_cast<size_t>(needed))) {
      CACHALOT_CHECK_ARG(b / per == owner,
                         "forward: sequence {} has blocks {} and {} in different attention ranks' ranges ({} blocks each); "
                         "a sequence's blocks must lie in one range",
                         s, step.block_table[0], b, per);
      local.push_back(static_cast<int32_t>(b - owner * per));
    }
    plan.owner.push_back(owner);
    plan.start.push_back(step.start);
    plan.tokens.emplace_back(step.tokens.begin(), step.tokens.end());
    plan.blocks.push_back(std::move(local));
  }
  return plan;
}

KvCache& ExpertParallelRunner::follower_cache(const ForwardPlan& plan) {
  std::erase_if(partitions_, [&](const auto& entry) {
    return std::find(plan.live_caches.begin(), plan.live_caches.end(), entry.first) == plan.live_caches.end();
  });
  auto it = partitions_.find(plan.cache_id);
  if (it == partitions_.end()) it = partitions_.emplace(plan.cache_id, model_.make_partition(plan.blocks_per_rank)).first;
  CACHALOT_ASSERT(it->second.blocks_per_partition() == plan.blocks_per_rank);
  return it->second;
}

ForwardOutput ExpertParallelRunner::process_forward(std::span<const std::byte> plan_bytes, KvCache* cache) {
  ep::Transport& t = *transport_;
  const int rank = t.rank();
  ep::Buffer& buffer = buffer_of(t);
  const ForwardPlan plan = unpack_plan(ep::broadcast_bytes(buffer, 0, plan_bytes));
  KvCache& mine = rank == 0 ? *cache : follower_cache(plan);
  if (rank != 0 && plan.placement_version > 0) {
    const eplb::Placement& now = *active_[rank]->placement;
    std::lock_guard lock(placement_mutex_);
    begin_placement(std::make_shared<const eplb::Placement>(
                        eplb::placement_from_slots(plan.placement_slots, now.layers, now.logical)),
                    plan.placement_version);
  }
  const std::vector<SequenceStep> steps = plan.steps();
  const BatchLayout layout = make_layout(steps, model_.config_.max_position_embeddings);
  std::vector<int64_t> sequences;
  for (size_t s = 0; s < steps.size(); ++s)
    if (plan.owner[s] == rank) sequences.push_back(static_cast<int64_t>(s));
  RankOutput part = run_rank(t, sequences, steps, layout, mine, plan.options);
  const std::vector<std::vector<std::byte>> parts =
      ep::gather_bytes(buffer, 0, rank == 0 ? std::vector<std::byte>() : pack(part));
  if (rank != 0) return {};
  ForwardOutput out = empty_output(layout, plan.options);
  const int64_t k = model_.config_.num_experts_per_tok;
  place(part, k, out);
  for (size_t src = 1; src < parts.size(); ++src) place(unpack_rank_output(parts[src], model_.config_.vocab_size), k, out);
  return out;
}

ForwardOutput ExpertParallelRunner::process_forward_guarded(std::span<const std::byte> plan, KvCache* cache) {
  try {
    return process_forward(plan, cache);
  } catch (const std::exception& e) {
    failed_ = true;
    transport_->abort(e.what());  // the other processes stop waiting for this one
    throw;
  }
}

void ExpertParallelRunner::send_command(uint8_t command) {
  if (failed_) raise(ErrorKind::kTimeout, "expert parallelism: a rank failed earlier; restart the ranks");
  std::vector<std::byte> all(static_cast<size_t>(transport_->world_size()));
  const std::byte mine{command};
  transport_->all_gather({&mine, 1}, all);
}

void ExpertParallelRunner::follow() {
  CACHALOT_CHECK_ARG(transport_ && transport_->rank() != 0, "follow(): only EP ranks other than 0 follow");
  for (;;) {
    std::vector<std::byte> all(static_cast<size_t>(transport_->world_size()));
    const std::byte mine{0};
    // Idle until rank 0 has work, however long that takes (a failed or dead rank 0 still ends it).
    transport_->all_gather({&mine, 1}, all, ep::kNoDeadline);
    if (static_cast<uint8_t>(all[0]) != kCommandForward) return;
    process_forward_guarded({}, nullptr);
  }
}

void ExpertParallelRunner::release_followers() {
  if (!transport_ || transport_->rank() != 0 || failed_ || released_) return;
  released_ = true;
  send_command(kCommandStop);
}

RankOutput ExpertParallelRunner::run_rank(ep::Transport& t, const std::vector<int64_t>& sequences,
                                          std::span<const SequenceStep> steps, const BatchLayout& layout, KvCache& cache,
                                          const ForwardOptions& options) {
  const int rank = t.rank();
  ep::Buffer& buffer = buffer_of(t);
  const ModelConfig& c = model_.config_;
  const Precision p = model_.options_.precision;
  const int64_t hidden = c.hidden_size;

  // The rank's sequences in one or two micro-batches: the first takes sequences until it holds
  // half of the rank's new tokens.
  auto tokens_of = [&](int64_t s) { return layout.seq_begin[s + 1] - layout.seq_begin[s]; };
  int64_t total = 0;
  for (const int64_t s : sequences) total += tokens_of(s);
  std::vector<MicroBatch> mbs(model_.options_.ep_overlap ? 2 : 1);
  int64_t taken = 0;
  for (const int64_t s : sequences) {
    const int part = mbs.size() == 2 && !mbs[0].sequences.empty() && 2 * taken >= total ? 1 : 0;
    mbs[part].sequences.push_back(s);
    if (part == 0) taken += tokens_of(s);
  }
  int64_t largest = 0;
  for (MicroBatch& mb : mbs) {
    for (const int64_t s : mb.sequences) mb.steps.push_back(steps[s]);
    // An empty micro-batch still takes part in every dispatch and combine, with [0, hidden] rows.
    mb.x = Tensor::empty(DType::kF32, {0, hidden});
    if (mb.steps.empty()) continue;
    mb.layout = make_layout(mb.steps, c.max_position_embeddings);
    mb.rows = mb.layout.rows();
    largest = std::max(largest, mb.rows);
    mb.h = model_.embed(mb.steps, mb.rows);
    mb.x = Tensor::empty(DType::kF32, {mb.rows, hidden});
  }
  // Every rank runs as many dispatch rounds per layer as the busiest micro-batch needs, and all
  // use low-latency mode when every rank only decodes (one new token per sequence) within its cap.
  const int64_t decode_only = std::all_of(sequences.begin(), sequences.end(), [&](int64_t s) { return tokens_of(s) == 1; });
  // ... and every rank switches to a new expert placement once all have it ready.
  const int64_t mine[3] = {largest, decode_only, ready_version(rank)};
  std::vector<int64_t> all(3 * static_cast<size_t>(t.world_size()));
  t.all_gather(std::as_bytes(std::span(mine)), std::as_writable_bytes(std::span(all)));
  int64_t busiest = 0, agreed = mine[2];
  bool low_latency = model_.options_.ep_low_latency_decode;
  for (int r = 0; r < t.world_size(); ++r) {
    busiest = std::max(busiest, all[3 * r]);
    low_latency = low_latency && all[3 * r + 1] != 0;
    agreed = std::min(agreed, all[3 * r + 2]);
  }
  switch_placement(rank, agreed);
  std::shared_ptr<const RankExperts> experts;
  {
    std::lock_guard lock(placement_mutex_);
    experts = active_[rank];
  }
  low_latency = low_latency && busiest <= kLowLatencyMaxTokens;
  const int64_t chunks = std::max<int64_t>(1, (busiest + kDispatchChunkTokens - 1) / kDispatchChunkTokens);

  RankOutput part;
  if (options.record_routing)
    for (const MicroBatch& mb : mbs)
      for (const int64_t s : mb.sequences)
        for (int64_t j = 0; j < tokens_of(s); ++j) part.tokens.push_back(layout.seq_begin[s] + j);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    trace::Span layer_span("layer", "model");
    layer_span.arg("layer", l).arg("rank", rank);
    const LayerWeights& layer = model_.weights_.layers[l];
    if (!layer.is_moe) {
      for (MicroBatch& mb : mbs) {
        if (mb.rows == 0) continue;
        normalize(mb, layer.attn_norm);
        model_.add_residual(mb.h, model_.attention_[l].forward(mb.x, mb.layout, cache.layers[l]));
        normalize(mb, layer.ffn_norm);
        model_.add_residual(mb.h, mlp_forward(layer.mlp, mb.x, p));
      }
      continue;
    }
    moe_layer(buffer, *experts, l, low_latency ? 0 : chunks, mbs, cache.layers[l]);
    // Tokens per logical expert (the loads EPLB balances).
    std::vector<int64_t>& load = part.expert_tokens.emplace_back(static_cast<size_t>(c.n_routed_experts), 0);
    for (const MicroBatch& mb : mbs) count_expert_tokens(mb.routing, load);
    if (options.record_routing) {
      std::vector<int32_t>& chosen = part.routing.emplace_back();
      for (const MicroBatch& mb : mbs) chosen.insert(chosen.end(), mb.routing.experts.begin(), mb.routing.experts.end());
    }
  }

  // Logits of this rank's rows, and where they go in the forward's output.
  std::vector<Tensor> logits;
  for (const MicroBatch& mb : mbs) {
    if (mb.rows == 0) continue;
    std::vector<int64_t> picked;
    for (int64_t i = 0; i < mb.layout.sequences(); ++i) {
      const int64_t s = mb.sequences[i];
      for (int64_t r = options.all_logits ? mb.layout.seq_begin[i] : mb.layout.seq_begin[i + 1] - 1;
           r < mb.layout.seq_begin[i + 1]; ++r) {
        picked.push_back(r);
        part.rows.push_back(options.all_logits ? layout.seq_begin[s] + (r - mb.layout.seq_begin[i]) : s);
      }
    }
    logits.push_back(model_.logits_of(mb.h, picked));
  }
  const int64_t vocab = c.vocab_size;
  part.logits = Tensor::empty(DType::kF32, {static_cast<int64_t>(part.rows.size()), vocab});
  float* dst = part.logits.mutable_data<float>();
  for (const Tensor& l : logits) dst = std::copy_n(l.data<float>(), l.numel(), dst);
  return part;
}

void ExpertParallelRunner::normalize(MicroBatch& mb, const Tensor& weight) const {
  const ModelConfig& c = model_.config_;
  rms_norm(mb.h.data<float>(), weight.data<float>(), mb.rows, c.hidden_size, c.rms_norm_eps, mb.x.mutable_data<float>());
  round_activations(model_.options_.precision, mb.x);
}

void ExpertParallelRunner::moe_layer(ep::Buffer& buffer, const RankExperts& experts, int64_t l, int64_t chunks,
                                     std::vector<MicroBatch>& mbs,
                                     mla::PagedKvCache& layer_cache) const {
  const ModelConfig& c = model_.config_;
  const Precision p = model_.options_.precision;
  const LayerWeights& layer = model_.weights_.layers[l];
  const MoeLayer& shard = experts.layers[l];
  const eplb::Placement& placement = *experts.placement;
  const int64_t moe = moe_index_[l], slots = placement.physical;
  const int64_t hidden = c.hidden_size, k = c.num_experts_per_tok;
  const bool fp8 = shard.takes_fp8();
  // chunks == 0: low-latency mode, one round of (token, expert) pairs into the masked layout.
  const bool low_latency = chunks == 0;
  if (low_latency) chunks = 1;

  // Posts micro-batch mb's dispatch of rows [chunk * kDispatchChunkTokens, ...).
  auto post_dispatch = [&](MicroBatch& mb, int64_t chunk) {
    const int64_t lo = std::min(mb.rows, chunk * kDispatchChunkTokens), hi = std::min(mb.rows, lo + kDispatchChunkTokens);
    const int64_t n = hi - lo;
    Tensor topk = Tensor::empty(DType::kI32, {n, k}), weights = Tensor::empty(DType::kF32, {n, k});
    for (int64_t i = 0; i < n * k; ++i) {
      // A token's rows go to replica (its row % replicas) of each expert: spread evenly.
      topk.mutable_data<int32_t>()[i] = physical_slot(placement, moe, mb.routing.experts[lo * k + i], lo + i / k);
      weights.mutable_data<float>()[i] = mb.routing.weights[lo * k + i];
    }
    if (low_latency) {
      mb.topk_weights = weights;
      mb.ll_dispatch = buffer.low_latency_dispatch(mb.x, topk, kLowLatencyMaxTokens, slots, fp8);
      return;
    }
    const ep::DispatchLayout dl = buffer.get_dispatch_layout(topk, slots);
    if (fp8)
      mb.dispatch = buffer.dispatch_async(mb.xq.data.slice(0, lo, hi), mb.xq.scales.slice(0, lo, hi), topk, weights, dl,
                                          kInPlace);
    else
      mb.dispatch = buffer.dispatch_async(mb.x.slice(0, lo, hi), Tensor(), topk, weights, dl, kInPlace);
  };
  // Receives mb's dispatch, runs the held experts and posts the combine.
  auto run_experts = [&](MicroBatch& mb) {
    if (low_latency) {
      ep::LowLatencyRecv recv = mb.ll_dispatch.receive();
      trace::Span span("experts", "model");
      // The experts write straight into the combine buffer (zero copy over local/shm ranks
      // after an in-place dispatch), in BF16 in fast mode as DeepSeek combines.
      Tensor out = buffer.low_latency_combine_buffer(recv.handle, p == Precision::kFast ? DType::kBF16 : DType::kF32);
      shard.experts_forward_masked(recv.x, recv.scales, recv.count, out);
      mb.ll_combine = buffer.low_latency_combine(out, mb.topk_weights, recv.handle);
      return;
    }
    ep::DispatchResult recv = mb.dispatch.receive();
    trace::Span span("experts", "model");
    span.arg("rows", recv.x.size(0));
    Routing local;
    local.k = k;
    local.experts.assign(recv.topk_idx.data<int32_t>(), recv.topk_idx.data<int32_t>() + recv.topk_idx.numel());
    local.weights.assign(recv.topk_weights.data<float>(), recv.topk_weights.data<float>() + recv.topk_weights.numel());
    Tensor out = fp8 ? shard.experts_forward(recv.x, recv.scales, local) : shard.experts_forward(recv.x, local);
    if (p == Precision::kFast) out = to_bf16(out);
    mb.combine = buffer.combine_async(out, recv.handle);
  };

  // Attention and routing; with two micro-batches and one chunk, the first one's dispatch goes
  // out before the second one attends.
  const bool early = mbs.size() > 1 && chunks == 1;
  for (size_t i = 0; i < mbs.size(); ++i) {
    MicroBatch& mb = mbs[i];
    mb.routing = Routing{k, {}, {}};
    if (mb.rows > 0) {
      normalize(mb, layer.attn_norm);
      model_.add_residual(mb.h, model_.attention_[l].forward(mb.x, mb.layout, layer_cache));
      normalize(mb, layer.ffn_norm);
      mb.routing = shard.route_tokens(mb.x);
    }
    if (fp8) mb.xq = gemm::quantize_activations(mb.x);
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
      const Tensor part = low_latency ? mb.ll_combine.receive() : mb.combine.receive();
      const int64_t lo = std::min(mb.rows, chunk * kDispatchChunkTokens);
      CACHALOT_ASSERT(part.size(0) == std::min(mb.rows - lo, kDispatchChunkTokens));
      std::copy_n(part.data<float>(), part.numel(), mb.y.mutable_data<float>() + lo * hidden);
      if (!last || mb.rows == 0) continue;
      shard.finish_output(mb.y, shared);
      model_.add_residual(mb.h, mb.y);
    }
  }
}

}  // namespace cachalot::model
