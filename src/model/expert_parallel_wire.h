// What rank 0 of a process-mode EP group sends the other ranks for one forward (the plan), and
// what each rank sends back (its part of the output). Packed with core/byte_stream.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "model/model.h"

namespace cachalot::model {

struct ForwardPlan {
  int64_t cache_id = 0;         // which of rank 0's KV caches (each rank keeps its partition of it)
  int64_t blocks_per_rank = 0;  // the size of every rank's partition
  std::vector<int64_t> live_caches;  // rank 0's caches still alive: the others drop the rest
  ForwardOptions options;
  std::vector<int32_t> owner;   // the attention rank of each sequence (whose partition holds its KV)
  std::vector<int64_t> start;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<int32_t>> blocks;  // the blocks its positions need, local to the owner's partition
  // A new expert placement to prepare (version 0: none): its slots, [MoE layers][physical].
  int64_t placement_version = 0;
  std::vector<int32_t> placement_slots;

  // Views into this plan: valid while it lives.
  std::vector<SequenceStep> steps() const;
};

std::vector<std::byte> pack(const ForwardPlan& plan);
ForwardPlan unpack_plan(std::span<const std::byte> bytes);

// One rank's share of a forward's output.
struct RankOutput {
  std::vector<int64_t> rows;  // the rows of ForwardOutput::logits it computed
  Tensor logits;              // F32 [rows.size(), vocab]
  // With ForwardOptions::record_routing: the batch rows of its new tokens, and for each MoE
  // layer their chosen experts ([tokens.size() * k]).
  std::vector<int64_t> tokens;
  std::vector<std::vector<int32_t>> routing;
  std::vector<std::vector<int64_t>> expert_tokens;  // [MoE layer][logical expert]: its tokens' choices
};

std::vector<std::byte> pack(const RankOutput& part);
RankOutput unpack_rank_output(std::span<const std::byte> bytes, int64_t vocab);

// Writes a rank's share into the forward's output (ranks own disjoint rows and tokens; expert
// token counts add up). Not thread-safe: one share at a time.
void place(const RankOutput& part, int64_t k, ForwardOutput& out);

}  // namespace cachalot::model
