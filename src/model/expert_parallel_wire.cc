#include "model/expert_parallel_wire.h"

#include <algorithm>

#include "core/byte_stream.h"
#include "core/error.h"

namespace cachalot::model {

std::vector<SequenceStep> ForwardPlan::steps() const {
  std::vector<SequenceStep> steps;
  for (size_t s = 0; s < owner.size(); ++s) steps.push_back({tokens[s], start[s], blocks[s]});
  return steps;
}

std::vector<std::byte> pack(const ForwardPlan& plan) {
  ByteWriter w;
  w.put(plan.cache_id);
  w.put(plan.blocks_per_rank);
  w.put_array<int64_t>(plan.live_caches);
  w.put<uint8_t>(plan.options.all_logits);
  w.put<uint8_t>(plan.options.record_routing);
  w.put_array<int32_t>(plan.owner);
  w.put_array<int64_t>(plan.start);
  for (size_t s = 0; s < plan.owner.size(); ++s) {
    w.put_array<int32_t>(plan.tokens[s]);
    w.put_array<int32_t>(plan.blocks[s]);
  }
  w.put(plan.placement_version);
  w.put_array<int32_t>(plan.placement_slots);
  return std::move(w.bytes());
}

ForwardPlan unpack_plan(std::span<const std::byte> bytes) {
  ByteReader r(bytes);
  ForwardPlan plan;
  plan.cache_id = r.get<int64_t>();
  plan.blocks_per_rank = r.get<int64_t>();
  plan.live_caches = r.get_array<int64_t>();
  plan.options.all_logits = r.get<uint8_t>() != 0;
  plan.options.record_routing = r.get<uint8_t>() != 0;
  plan.owner = r.get_array<int32_t>();
  plan.start = r.get_array<int64_t>();
  if (plan.start.size() != plan.owner.size())
    raise(ErrorKind::kInternal, "malformed EP plan: {} owners, {} starts", plan.owner.size(), plan.start.size());
  for (size_t s = 0; s < plan.owner.size(); ++s) {
    plan.tokens.push_back(r.get_array<int32_t>());
    plan.blocks.push_back(r.get_array<int32_t>());
  }
  plan.placement_version = r.get<int64_t>();
  plan.placement_slots = r.get_array<int32_t>();
  if (!r.done()) raise(ErrorKind::kInternal, "malformed EP plan: trailing bytes");
  return plan;
}

std::vector<std::byte> pack(const RankOutput& part) {
  ByteWriter w;
  w.put_array<int64_t>(part.rows);
  w.put_array<float>({part.logits.data<float>(), static_cast<size_t>(part.logits.numel())});
  w.put_array<int64_t>(part.tokens);
  w.put<uint64_t>(part.routing.size());
  for (const auto& layer : part.routing) w.put_array<int32_t>(layer);
  w.put<uint64_t>(part.expert_tokens.size());
  for (const auto& layer : part.expert_tokens) w.put_array<int64_t>(layer);
  return std::move(w.bytes());
}

RankOutput unpack_rank_output(std::span<const std::byte> bytes, int64_t vocab) {
  ByteReader r(bytes);
  RankOutput part;
  part.rows = r.get_array<int64_t>();
  const std::vector<float> logits = r.get_array<float>();
  const auto n = static_cast<int64_t>(part.rows.size());
  if (static_cast<int64_t>(logits.size()) != n * vocab)
    raise(ErrorKind::kInternal, "malformed EP output: {} logits for {} rows of {}", logits.size(), n, vocab);
  part.logits = Tensor::empty(DType::kF32, {n, vocab});
  std::copy(logits.begin(), logits.end(), part.logits.mutable_data<float>());
  part.tokens = r.get_array<int64_t>();
  part.routing.resize(r.get<uint64_t>());
  for (auto& layer : part.routing) layer = r.get_array<int32_t>();
  part.expert_tokens.resize(r.get<uint64_t>());
  for (auto& layer : part.expert_tokens) layer = r.get_array<int64_t>();
  if (!r.done()) raise(ErrorKind::kInternal, "malformed EP output: trailing bytes");
  return part;
}

void place(const RankOutput& part, int64_t k, ForwardOutput& out) {
  if (out.expert_tokens.empty()) out.expert_tokens = part.expert_tokens;
  else
    for (size_t m = 0; m < part.expert_tokens.size(); ++m)
      for (size_t e = 0; e < part.expert_tokens[m].size(); ++e) out.expert_tokens[m][e] += part.expert_tokens[m][e];
  const int64_t vocab = out.logits.size(1);
  for (size_t i = 0; i < part.rows.size(); ++i)
    std::copy_n(part.logits.data<float>() + static_cast<int64_t>(i) * vocab, vocab,
                out.logits.mutable_data<float>() + part.rows[i] * vocab);
  CACHALOT_ASSERT(part.routing.empty() || part.routing.size() == out.routing.size());
  for (size_t m = 0; m < part.routing.size(); ++m) {
    CACHALOT_ASSERT(part.routing[m].size() == part.tokens.size() * static_cast<size_t>(k));
    for (size_t i = 0; i < part.tokens.size(); ++i) {
      const auto first = part.routing[m].begin() + static_cast<int64_t>(i) * k;
      out.routing[m][part.tokens[i]].assign(first, first + k);
    }
  }
}

}  // namespace cachalot::model
