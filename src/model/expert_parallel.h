// The model's expert-parallel forward (ModelOptions::ep_ranks > 1), as DeepSeek serves V3:
//
// - Attention is data-parallel: the batch's sequences are spread over the ranks, balanced by
//   new tokens; each rank embeds and attends for its own sequences (the ranks are threads
//   sharing the KV pool, so a sequence may land on another rank next step at no cost).
// - Each rank holds S = P / ranks expert slots (physical experts [r * S, (r+1) * S), P = the
//   routed experts plus EPLB's redundant replicas) and the shared experts. The router's logical
//   expert ids map to physical slots through the placement (eplb::Placement, the identity until
//   set_placement(); a token goes to replica (its row % replicas) of an expert); every MoE layer dispatches each token's row to the ranks of its experts (FP8 +
//   scales in fast mode, F32 in exact mode), the ranks run their experts on what arrived, and
//   combine brings the weighted sums back (BF16 in fast mode, F32 in exact mode).
// - With overlap on, a rank splits its sequences into two micro-batches and orders each MoE
//   layer so that one micro-batch's dispatch is in flight while the other attends, and its
//   combine while the other's experts run (DeepSeek's two-micro-batch overlap).
// - Decode steps (every rank's sequences one new token each, at most kLowLatencyMaxTokens per
//   micro-batch) use low-latency mode instead: one message per (token, expert) pair into the
//   [local experts, W * cap, H] layout, the masked grouped GEMM over it, and a weighted combine.
// - Rows go through dispatch in chunks of at most kDispatchChunkTokens per rank and micro-batch
//   (every rank runs the same number of chunks), so the transport's slots have a fixed size.
//
// Ranks are threads of this process (ModelOptions::ep_ranks, the `local` transport), or, with
// ModelOptions::ep_transport, processes (`shm`, `mpi`): then every process loads the model as one
// rank holding only its experts, rank 0 calls forward() and the others call Model::follow(),
// which takes part in each of rank 0's forwards until rank 0's model is destroyed (or
// release_followers()). Attention stays data-parallel: the KV cache's block ids are split into
// one equal range per rank (KvCache::partitions), each process holds its range, and a sequence
// is attended by the rank whose range holds its blocks (the engine allocates a sequence's blocks
// in one range). Rank 0 broadcasts each forward's plan (the sequences, their ranks, their block
// tables) and gathers every rank's logits and routing back.
#pragma once

#include <cstdint>
#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <memory>
#include <span>
#include <vector>

#include "ep/buffer.h"
#include "ep/launch.h"
#include "ep/shared_memory_transport.h"
#include "eplb/eplb.h"
#include "model/expert_parallel_wire.h"
#include "model/model.h"

namespace cachalot::model {

inline constexpr int64_t kDispatchChunkTokens = 256;
// Decode steps use low-latency mode when no rank's micro-batch has more tokens than this (the
// cap DeepSeek's decode instances run with).
inline constexpr int64_t kLowLatencyMaxTokens = 128;

// Error(kInvalidArgument) unless `ranks` ranks (1..ep::kMaxRanks) split the routed experts evenly.
void check_expert_parallel(const ModelConfig& config, int ranks);

// Transport options (slot sizes) an EP group of `ranks` on `nodes` nodes needs for this model: one
// dispatch chunk of every rank, F32 both ways (exact mode), and a low-latency round, fit a slot.
ep::TransportOptions expert_parallel_transport_options(const ModelConfig& config, int ranks, int nodes = 1);

class ExpertParallelRunner {
 public:
  // Changing the placement does not stop service: the new slots' weights are prepared in the
  // background while forwards go on with the old placement, and every rank switches at the
  // start of the first forward in which all of them are ready. One change at a time.
  explicit ExpertParallelRunner(Model& model);
  ~ExpertParallelRunner();  // rank 0 of a process group releases the followers

  ForwardOutput forward(std::span<const SequenceStep> steps, const BatchLayout& layout, KvCache& cache,
                        const ForwardOptions& options);
  int ranks() const { return ranks_; }
  // Ranks whose processes each hold a range of the KV cache's blocks (1 unless process mode).
  int attention_ranks() const { return transport_ ? ranks_ : 1; }
  // Process mode, rank 0: names a new KV cache to the other ranks (they keep their ranges of it).
  void register_cache(KvCache& cache);
  // Process mode, ranks other than 0: take part in every forward rank 0 runs, until it stops.
  void follow();

  // Threads, or rank 0 of processes: starts moving to `placement` (layers = the MoE layers,
  // logical = n_routed_experts, physical a multiple of the ranks). Error(kInvalidArgument) for a
  // placement that does not fit, Error(kResourceExhausted) while an earlier change is pending.
  void set_placement(const eplb::Placement& placement);
  // The placement forwards use now (rank 0's), and its version (0: the initial identity).
  eplb::Placement placement() const;
  int64_t placement_version() const;
  // Process mode, rank 0: tells the followers to return from follow().
  void release_followers();

 private:
  struct MicroBatch;
  // One rank's experts under one placement: a MoeLayer of its slots per model layer.
  struct RankExperts {
    int64_t version = 0;
    std::shared_ptr<const eplb::Placement> placement;
    std::vector<MoeLayer> layers;  // [model layer]; empty for dense layers
  };
  // A placement being prepared: `built` fills in the background, then every rank switches.
  struct PendingPlacement {
    int64_t version = 0;
    std::shared_ptr<const eplb::Placement> placement;
    std::vector<std::shared_ptr<const RankExperts>> built;  // [rank]: the ranks this process runs
    std::atomic<bool> ready{false};
    std::thread builder;
    bool announced = false;  // process mode, rank 0: the plan has carried it to the others
    int switched = 0;
  };
  static constexpr uint8_t kCommandStop = 0, kCommandForward = 1;

  // Runs `sequences` (indices into steps) as this rank: its micro-batches through every layer;
  // returns their logits (and routing).
  RankOutput run_rank(ep::Transport& t, const std::vector<int64_t>& sequences, std::span<const SequenceStep> steps,
                      const BatchLayout& layout, KvCache& cache, const ForwardOptions& options);
  // Process mode, every rank: the plan from rank 0 (`plan` on rank 0), this rank's sequences on
  // its partition of the cache (`cache` on rank 0), every rank's output gathered to rank 0.
  ForwardOutput process_forward(std::span<const std::byte> plan, KvCache* cache);
  ForwardOutput process_forward_guarded(std::span<const std::byte> plan, KvCache* cache);
  ForwardPlan make_plan(std::span<const SequenceStep> steps, const KvCache& cache, const ForwardOptions& options);
  KvCache& follower_cache(const ForwardPlan& plan);
  ForwardOutput empty_output(const BatchLayout& layout, const ForwardOptions& options) const;
  ep::Buffer& buffer_of(ep::Transport& t);
  void send_command(uint8_t command);
  void normalize(MicroBatch& mb, const Tensor& weight) const;
  // One MoE layer over the rank's micro-batches: route, dispatch, local experts, combine, shared.
  void moe_layer(ep::Buffer& buffer, const RankExperts& experts, int64_t layer, int64_t chunks, std::vector<MicroBatch>& mbs,
                 mla::PagedKvCache& layer_cache) const;
  void start_group();
  std::shared_ptr<const RankExperts> build_rank_experts(int rank, std::shared_ptr<const eplb::Placement> placement,
                                                       int64_t version) const;
  // Starts building `placement` for the ranks this process runs (caller holds placement_mutex_).
  void begin_placement(std::shared_ptr<const eplb::Placement> placement, int64_t version);
  // The newest placement version this rank has ready, and the switch once every rank has it.
  int64_t ready_version(int rank);
  void switch_placement(int rank, int64_t version);
  // Replica `pick` of the logical expert in MoE layer `moe`, as a physical slot.
  static int32_t physical_slot(const eplb::Placement& p, int64_t moe, int32_t expert, int64_t pick);

  Model& model_;  // non-const: building a rank's experts prepares (packs) their weights
  int ranks_;
  std::shared_ptr<ep::Transport> transport_;         // process mode: this process's rank
  bool failed_ = false, released_ = false;
  std::vector<int64_t> moe_index_;                   // [model layer]: its index among MoE layers, -1 for dense
  std::vector<std::shared_ptr<const RankExperts>> active_;  // [rank]; process mode: own rank only
  mutable std::mutex placement_mutex_;               // guards pending_ and active_ swaps
  std::unique_ptr<PendingPlacement> pending_;
  std::unique_ptr<ep::LocalRanks> group_;
  std::vector<std::unique_ptr<ep::Buffer>> buffers_; // [rank], made by the rank's thread
  // Process mode. Rank 0: its caches' ids (alive while the KvCache holds them). Others: their
  // partitions of rank 0's live caches, by id.
  int64_t next_cache_id_ = 1;
  std::vector<std::weak_ptr<const int64_t>> caches_;
  std::map<int64_t, KvCache> partitions_;
};

}  // namespace cachalot::model
