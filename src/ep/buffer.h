// ep::Buffer: DeepEP's dispatch/combine over one of our transports (same API on all of them).
// Experts are numbered 0..num_experts-1 and rank r holds the contiguous range
// [r * E/W, (r+1) * E/W) (the engine maps router ids to these through its placement table).
//
// Normal mode (prefill: throughput; a layout first, then one round each way):
//   DispatchLayout layout = buffer.get_dispatch_layout(topk_idx, num_experts);
//   DispatchResult r = buffer.dispatch(x, x_scales, topk_idx, topk_weights, layout);
//   ... each rank runs its experts on r.x, reducing every received row over its local experts
//       (weighted by r.topk_weights) into expert_out [r.x.size(0), H] ...
//   Tensor y = buffer.combine(expert_out, r.handle);  // plain sum over the ranks, F32 [T, H]
// Each token reaches each rank holding one of its experts once; received rows are grouped by
// source rank ascending, then by token index: deterministic, and combine sums in rank order.
// With ranks on several nodes (Transport::num_nodes() > 1, several ranks per node) a token
// crosses to each node once and is forwarded inside it, and combine sums per node first, then
// over nodes in node order (ep/internode.cc: DeepEP's internode mode).
//
// Low-latency mode (decode: latency; fixed cap of tokens per rank, one message per (token,
// expert) pair, received straight into the masked grouped GEMM's layout):
//   PendingDispatch d = buffer.low_latency_dispatch(x, topk_idx, max_tokens, num_experts, fp8);
//   ... other work (the sends are out; the receive is deferred: DeepEP's hook) ...
//   LowLatencyRecv r = d.receive();          // x [local_experts, W * max_tokens, H], count[e]
//   Tensor expert_out = buffer.low_latency_combine_buffer(r.handle, DType::kBF16);
//   ... the experts write their outputs into expert_out (or any tensor of that shape) ...
//   PendingCombine c = buffer.low_latency_combine(expert_out, topk_weights, r.handle);
//   Tensor y = c.receive();                  // sum_k w_k * expert_out, F32 [T, H]
// At most two operations may be outstanding (the transport's two data slots), and every rank
// must issue the same operations in the same order.
//
// Overflow (a message larger than its source's share of the slot, slot_bytes / world) fails the
// operation on every rank with Error(kResourceExhausted) naming the sizes; the group stays
// usable.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "ep/transport.h"

namespace cachalot::ep {

struct DispatchLayout {
  int64_t num_tokens = 0, num_experts = 0;
  std::vector<int32_t> tokens_per_rank;    // [world]: tokens with >= 1 expert on the rank
  std::vector<int32_t> tokens_per_node;    // [nodes]
  std::vector<int32_t> tokens_per_expert;  // [num_experts]
  std::vector<uint8_t> is_token_in_rank;   // [tokens][world]
};

// What combine needs to send each row back.
struct DispatchHandle {
  int64_t num_tokens = 0;                  // at this rank, before dispatch
  std::vector<uint8_t> is_token_in_rank;   // [tokens][world] of this rank's tokens
  std::vector<int64_t> recv_begin;         // [world + 1]: received rows from each source
  // Internode mode (ep/internode.cc), as forwarder: the rows from rank `local` of each node
  // ([nodes + 1] prefix sums) and the ranks of this node each went on to ([rows][ranks_per_node]).
  std::vector<int64_t> forward_begin;
  std::vector<uint8_t> forwarded_to;
};

// Normal dispatch's receive side. With DispatchOptions::in_place (and a transport that shares
// memory) the tensors are read-only views into the Buffer's receive slot, valid until the
// operation after next on this Buffer (the slot's next round); otherwise they are owned.
struct DispatchResult {
  Tensor x;             // [recv, H], the dtype sent (F32, BF16 or F8_E4M3)
  Tensor scales;        // F32 [recv, ceil(H/128)] when FP8 was sent
  Tensor topk_idx;      // I32 [recv, K]: local expert ids, -1 for experts on other ranks
  Tensor topk_weights;  // F32 [recv, K]
  Tensor src_index;     // I32 [recv]: the token's row at its source rank
  std::vector<int32_t> tokens_per_local_expert;
  DispatchHandle handle;
};

struct LowLatencyHandle {
  int64_t num_tokens = 0, num_experts = 0, max_tokens = 0, hidden = 0;
  Tensor topk_idx;                          // this rank's, I32 [T, K]
  // For each source rank, the packed row (local_expert * W * max_tokens + row) of each pair it
  // sent, in its sending order: combine returns the outputs in that order.
  std::vector<std::vector<int64_t>> rows_from;
  // A dispatch that went in place: the bytes of its layout in a slot (a zero-copy combine's
  // outputs follow them) and, for each destination rank, the packed row there of each pair this
  // rank sent it (sending order): where a zero-copy combine reads that pair's output.
  size_t in_place_bytes = 0;
  std::vector<std::vector<int64_t>> rows_at;
};

// x, scales and src_info live in the Buffer and are reused: they are valid until the next
// low-latency dispatch on the same slot (the operation after next), as in DeepEP. Only the first
// count[e] rows of expert e are written.
struct LowLatencyRecv {
  Tensor x;                    // [local_experts, W * max_tokens, H]: F8_E4M3 or the input dtype
  Tensor scales;               // F32 [local_experts, W * max_tokens, ceil(H/128)] with FP8
  std::vector<int32_t> count;  // valid rows per local expert (the masked GEMM's masked_m)
  Tensor src_info;             // I32 [local_experts, W * max_tokens, 2]: (source rank, token)
  LowLatencyHandle handle;
};

struct DispatchOptions {
  // Senders write each row straight to its final place in the receiver's slot (token counts
  // are all-gathered first, as DeepEP's notify step does) and the result views the slot: one
  // copy instead of two. Used only when the transport shares memory (local, shm).
  bool in_place = false;
};

class Buffer;
namespace detail {
struct RowWriter;
}

// A normal-mode dispatch or combine whose sends are out; receive() waits for the messages to
// this rank and lays them out (Buffer::dispatch == dispatch_async(...).receive()).
class PendingNormalDispatch {
 public:
  DispatchResult receive();

 private:
  friend class Buffer;
  Buffer* buffer_ = nullptr;
  int slot_ = -1;
  DType dtype_ = DType::kF32;
  int64_t hidden_ = 0, k_ = 0, experts_per_rank_ = 0;
  bool in_place_ = false;
  bool internode_ = false;
  DispatchHandle handle_;  // in place: recv_begin is known at send time
};

class PendingNormalCombine {
 public:
  Tensor receive();

 private:
  friend class Buffer;
  Buffer* buffer_ = nullptr;
  int slot_ = -1;
  DType dtype_ = DType::kF32;
  int64_t hidden_ = 0;
  bool internode_ = false;
  DispatchHandle handle_;
};

// A low-latency dispatch whose sends are out; receive() (the hook) waits and lays out.
class PendingDispatch {
 public:
  LowLatencyRecv receive();

 private:
  friend class Buffer;
  Buffer* buffer_ = nullptr;
  int slot_ = -1;
  bool fp8_ = false;
  DType dtype_ = DType::kF32;
  LowLatencyHandle handle_;
  // In place (handle_.in_place_bytes > 0; transports that share memory): senders wrote the rows
  // into this rank's slot at their final places; counts_[src * num_experts + e] = pairs src sent
  // to expert e.
  std::vector<int32_t> counts_;
};

class PendingCombine {
 public:
  Tensor receive();
  // The outputs stay in the experts' ranks' slots and the origins read them there.
  bool zero_copy() const { return zero_copy_; }

 private:
  friend class Buffer;
  Buffer* buffer_ = nullptr;
  int slot_ = -1;
  bool zero_copy_ = false;
  size_t offset_ = 0;  // zero copy: where the outputs sit in each rank's slot
  DType dtype_ = DType::kF32;
  Tensor topk_weights;
  LowLatencyHandle handle_;
};

class Buffer {
 public:
  // Borrows the transport (one Buffer per transport: the Buffer alternates its data slots).
  explicit Buffer(Transport& transport) : transport_(&transport) {}

  Transport& transport() { return *transport_; }
  int rank() const { return transport_->rank(); }
  int world_size() const { return transport_->world_size(); }

  // topk_idx I32 or I64 [T, K], -1 = no expert.
  DispatchLayout get_dispatch_layout(const Tensor& topk_idx, int64_t num_experts) const;
  // x F32/BF16 [T, H], or F8_E4M3 with x_scales F32 [T, ceil(H/128)]; topk_weights F32 [T, K].
  DispatchResult dispatch(const Tensor& x, const Tensor& x_scales, const Tensor& topk_idx, const Tensor& topk_weights,
                          const DispatchLayout& layout, const DispatchOptions& options = {}) {
    return dispatch_async(x, x_scales, topk_idx, topk_weights, layout, options).receive();
  }
  PendingNormalDispatch dispatch_async(const Tensor& x, const Tensor& x_scales, const Tensor& topk_idx,
                                       const Tensor& topk_weights, const DispatchLayout& layout,
                                       const DispatchOptions& options = {});
  // expert_out F32 or BF16 [recv, H] -> F32 [T, H].
  Tensor combine(const Tensor& expert_out, const DispatchHandle& handle) { return combine_async(expert_out, handle).receive(); }
  PendingNormalCombine combine_async(const Tensor& expert_out, const DispatchHandle& handle);

  // x F32/BF16 [T <= max_tokens, H]; use_fp8 quantizes per 1x128 (else the dtype of x is sent).
  // Goes in place (see low_latency_in_place_slot_bytes) when the transport and the slot allow
  // it, unless allow_in_place is false (tests use that to run the message path everywhere).
  PendingDispatch low_latency_dispatch(const Tensor& x, const Tensor& topk_idx, int64_t max_tokens, int64_t num_experts,
                                       bool use_fp8, bool allow_in_place = true);
  // expert_out [local_experts, W * max_tokens, H] F32/BF16; topk_weights F32 [T, K].
  PendingCombine low_latency_combine(const Tensor& expert_out, const Tensor& topk_weights, const LowLatencyHandle& handle);
  // Where to write the experts' outputs for the next operation, a low_latency_combine of this
  // handle (DeepEP's zero-copy combine buffer): [local_experts, W * max_tokens, H] of `dtype`
  // (F32/BF16). After an in-place dispatch on a transport that shares memory, with a slot of
  // low_latency_zero_copy_slot_bytes, it is this rank's slot itself: the combine then sends
  // nothing and each origin sums its rows straight from the experts' ranks' slots (one pass
  // over the outputs instead of a copy and a pass). Otherwise it is a tensor kept by the Buffer
  // and the combine copies as usual. Every rank passes its buffer to the combine, or none does,
  // and the combine is the next operation on this Buffer (another one raises kInvalidArgument).
  Tensor low_latency_combine_buffer(const LowLatencyHandle& handle, DType dtype);

  // Slot bytes (TransportOptions::slot_bytes) that never overflow: normal mode with up to
  // `tokens` rows per rank (every token could go to every rank), elements of dispatch_elem bytes
  // (1 = FP8 with scales) sent and combine_elem bytes returned; low-latency mode.
  // With ranks on `nodes` nodes a forwarder passes on up to nodes x tokens rows.
  static size_t normal_slot_bytes(int world, int64_t tokens, int64_t hidden, int64_t k, size_t dispatch_elem,
                                  size_t combine_elem, int nodes = 1);
  static size_t low_latency_slot_bytes(int world, int64_t max_tokens, int64_t hidden, int64_t k, int64_t local_experts);
  // Slot bytes that let a low-latency dispatch of elements of `elem_bytes` (1 = FP8 with scales)
  // go in place over a transport that shares memory: the slot then holds the whole masked
  // layout [local_experts, W * max_tokens, H] and senders write each row straight to its place
  // (one copy instead of two). A smaller slot falls back to messages and a receive-side copy.
  static size_t low_latency_in_place_slot_bytes(int world, int64_t max_tokens, int64_t hidden, int64_t local_experts,
                                                size_t elem_bytes);
  // ... and that lets the combine that follows go zero-copy too (low_latency_combine_buffer),
  // returning elements of combine_elem bytes.
  static size_t low_latency_zero_copy_slot_bytes(int world, int64_t max_tokens, int64_t hidden, int64_t local_experts,
                                                 size_t dispatch_elem, size_t combine_elem);

  // One round of byte messages: to_each[dst] (at most max_message_bytes(), empty allowed) to
  // every rank; returns what each source sent this rank, as views into the receive slot valid
  // until the operation after next. For control traffic (ep/collectives.h builds on it).
  std::vector<std::span<const std::byte>> exchange(std::span<const std::span<const std::byte>> to_each);
  size_t max_message_bytes() const;

 private:
  friend class PendingNormalDispatch;
  friend class PendingNormalCombine;
  friend class PendingDispatch;
  friend class PendingCombine;

  int next_slot();                 // the data slot the next operation uses
  size_t region_bytes() const;     // each source's share of a slot
  // Posts a round whose message from every source sits at src * region_bytes().
  void post_regions(int slot);
  // Raises on every rank if some message of this round reported an overflow.
  void check_overflow(int slot, const char* what);
  // What every pending operation's receive() starts with: wait for the round on `slot`, then
  // (messages with headers) check for overflow. Returns the transport.
  Transport& complete_round(int slot, const char* what, bool has_headers = true);

  // Internode normal mode (ep/internode.cc): ranks on several nodes of several ranks each; every
  // operation takes two rounds on its slot (to the nodes, then within them).
  bool internode() const;
  void post_internode_dispatch(int slot, const detail::RowWriter& writer, const DispatchLayout& layout);
  DispatchResult receive_internode_dispatch(PendingNormalDispatch& p);
  void post_internode_combine(int slot, const Tensor& expert_out, const DispatchHandle& handle);
  Tensor receive_internode_combine(PendingNormalCombine& p);

  // A tensor of this dtype and shape kept for `slot` (allocated once: a fresh one per call would
  // fault in hundreds of MB of zeroed pages, which dominated low-latency receives).
  Tensor reusable(int slot, int which, DType dtype, Dims shape);

  Transport* transport_;
  int slot_ = 0;
  Tensor reusable_[2][4];  // [slot][x, scales, src_info] of low-latency receives, combine buffer
  // The zero-copy combine buffer handed out for each slot's next operation (null: none).
  const std::byte* combine_buffer_[2] = {};
  size_t combine_offset_[2] = {};
};

}  // namespace cachalot::ep
