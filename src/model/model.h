// DeepSeek-V3 (and V2) forward pass on the gemm and mla libraries.
//
//   auto model = Model::load("path/to/model", {.precision = Precision::kFast});
//   KvCache cache = model->make_kv_cache(num_blocks);
//   ForwardOutput out = model->forward(steps, cache);
//
// One forward runs a batch of sequences, each with its own new tokens (a whole prompt, a chunk
// of one, or one decode token), its position and its own KV blocks; the caller owns the block
// tables (the engine's block manager, or a simple allocator in `generate`). Each layer writes
// the new tokens' latent + roped key into the cache, then attends over everything cached.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "ep/transport.h"
#include "eplb/eplb.h"
#include "mla/paged_kv_cache.h"
#include "model/attention.h"
#include "model/config.h"
#include "model/moe.h"
#include "model/numerics.h"
#include "model/weights.h"

namespace cachalot::model {

struct ModelOptions {
  Precision precision = Precision::kFast;
  // The cache format in fast mode (exact mode always keeps FP32).
  mla::KvFormat kv_format = mla::KvFormat::kBf16;
  // Expert parallelism (1 = off): ep_ranks ranks, threads of this process over the `local`
  // transport. Attention is data-parallel (each rank runs a share of the batch's sequences,
  // balanced by tokens), each rank holds n_routed_experts / ep_ranks routed experts and the
  // shared experts, and MoE layers dispatch/combine the rows through ep::Buffer (FP8 rows in
  // fast mode, F32 in exact mode). See expert_parallel.h.
  int ep_ranks = 1;
  // Ranks as processes instead: this process's transport (shm or mpi); ep_ranks is ignored.
  std::shared_ptr<ep::Transport> ep_transport;
  // Two micro-batches per rank, so one's dispatch/combine is in flight while the other computes.
  // Off by default: on CPUs with fewer cores than ranks it measured slower (docs/ep.md).
  bool ep_overlap = false;
  // Decode steps through low-latency dispatch/combine (the masked layout); else normal mode.
  bool ep_low_latency_decode = true;
  // Fast mode: attend for every sequence in this MLA form; by default each sequence gets the
  // form with fewer FLOPs (attention_cost.h: prompts expanded, decode steps absorbed).
  std::optional<AttentionForm> attention_form;
};

// The model's KV cache: one paged cache per layer, all addressed by the same block ids.
//
// With expert parallelism over processes the block ids [0, num_blocks()) are split into
// `partitions` equal ranges, one per attention rank: this process (rank 0) holds the first in
// `layers`, each other rank holds its own range in its process, and a sequence's blocks must all
// lie in one range (that rank attends for it). Otherwise partitions is 1.
struct KvCache {
  std::vector<mla::PagedKvCache> layers;
  int64_t partitions = 1;
  std::shared_ptr<const int64_t> ep_id;  // process-mode EP: names the cache to the other ranks

  int64_t blocks_per_partition() const { return layers.empty() ? 0 : layers[0].num_blocks(); }
  int64_t num_blocks() const { return blocks_per_partition() * partitions; }
};

struct SequenceStep {
  std::span<const int32_t> tokens;       // the new tokens
  int64_t start = 0;                     // their first position (tokens already cached)
  std::span<const int32_t> block_table;  // block ids covering positions [0, start + tokens.size())
};

struct ForwardOptions {
  bool all_logits = false;     // logits of every new token, else only each sequence's last
  bool record_routing = false; // chosen experts of every new token in every MoE layer
};

struct ForwardOutput {
  Tensor logits;  // F32 [rows, vocab]: every new token's (all_logits) or one per sequence
  // routing[moe layer index][token][k], experts in score order; token = row of the batch's new
  // tokens (sequence by sequence). Empty unless asked for.
  std::vector<std::vector<std::vector<int32_t>>> routing;
  // expert_tokens[moe layer index][expert]: how many of the new tokens chose each routed expert
  // (the load EPLB balances). Always filled.
  std::vector<std::vector<int64_t>> expert_tokens;
};

class ExpertParallelRunner;

class Model {
 public:
  // Reads config.json, opens the checkpoint (mmap), binds and checks every tensor, and in fast
  // mode packs the weights for the kernels.
  static std::unique_ptr<Model> load(const std::string& dir, const ModelOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  const ModelWeights& weights() const { return weights_; }
  // num_blocks must split evenly over attention_ranks().
  KvCache make_kv_cache(int64_t num_blocks) const;
  // Processes whose KV caches hold one range of block ids each (KvCache::partitions): the EP
  // ranks with ModelOptions::ep_transport, else 1.
  int attention_ranks() const;
  // Bytes of KV cache per token over all layers.
  int64_t kv_bytes_per_token() const;

  ForwardOutput forward(std::span<const SequenceStep> steps, KvCache& cache, const ForwardOptions& options = {}) const;

  // With ModelOptions::ep_transport, on ranks other than 0: takes part in every forward rank 0
  // runs and returns when rank 0's model is released (docs/ep.md).
  void follow() const;
  // Rank 0 of a process group: lets the followers return (also done when the model is destroyed).
  void release_followers() const;

  // Expert parallelism: where the routed experts live (eplb/eplb.h; layers = the MoE layers).
  // set_expert_placement starts moving to a new placement (EPLB's, with redundant replicas)
  // without stopping forwards: the ranks prepare their new slots in the background and switch
  // together at the start of a later forward. See ExpertParallelRunner. Without EP: an error.
  void set_expert_placement(const eplb::Placement& placement) const;
  eplb::Placement expert_placement() const;
  int64_t expert_placement_version() const;  // 0 until a set placement is in use
  // EP ranks (1 without EP) and the nodes they span.
  int ep_ranks() const;
  int ep_nodes() const;

  ~Model();

 private:
  friend class ExpertParallelRunner;
  Model(ModelConfig config, ModelOptions options, Checkpoint checkpoint);

  // One process's range of a cache: num_blocks blocks per layer.
  KvCache make_partition(int64_t num_blocks) const;
  // The pieces both forward paths share.
  Tensor embed(std::span<const SequenceStep> steps, int64_t rows) const;       // F32 [rows, hidden]
  void add_residual(Tensor& h, const Tensor& delta) const;
  // Final norm + lm_head on rows `picked` of h.
  Tensor logits_of(const Tensor& h, const std::vector<int64_t>& picked) const;

  ModelConfig config_;
  ModelOptions options_;
  Checkpoint checkpoint_;  // owns the mappings the weights view
  ModelWeights weights_;
  std::vector<Attention> attention_;    // one per layer
  std::vector<MoeLayer> moe_;           // one per layer (unused for dense layers and with EP)
  std::unique_ptr<ExpertParallelRunner> ep_;  // ep_ranks > 1
};

}  // namespace cachalot::model
