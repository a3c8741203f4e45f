// ep::Buffer's low-latency mode: one message row per (token, expert) pair, received into the
// [local_experts, W * max_tokens, H] layout of the masked grouped GEMM; the receive is split
// from the send (PendingDispatch/PendingCombine::receive, DeepEP's hook) so the caller can
// overlap other work with the transfer.
#include <algorithm>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "core/trace.h"
#include "ep/buffer.h"
#include "ep/buffer_internal.h"
#include "ep/message.h"
#include "gemm/quantize.h"

namespace cachalot::ep {
namespace {

// (local expert, token, k slot) of every pair a rank sends to `dst`, ordered by expert then token.
struct Pair {
  int32_t expert, token, slot;
};
std::vector<Pair> pairs_for(const std::vector<int32_t>& topk, int64_t k, int dst, int64_t per) {
  std::vector<Pair> pairs;
  for (size_t i = 0; i < topk.size(); ++i)
    if (topk[i] >= 0 && topk[i] / per == dst)
      pairs.push_back({static_cast<int32_t>(topk[i] % per), static_cast<int32_t>(i / k), static_cast<int32_t>(i % k)});
  std::stable_sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) { return a.expert < b.expert; });
  return pairs;
}

enum LowLatencySection { kMeta, kScales, kRows };
MessageLayout dispatch_sections(size_t pairs, int64_t kb, size_t row_bytes) {
  return MessageLayout{pairs * 2 * 4, pairs * static_cast<size_t>(kb) * 4, pairs * row_bytes};
}

// The in-place receive layout in a slot (after MessageLayout's unused header): the masked
// layout itself, [per, cap] rows with their scales and (source rank, token).
enum InPlaceSection { kMaskedRows, kMaskedScales, kMaskedSrcInfo };
MessageLayout in_place_sections(int64_t per, int64_t cap, int64_t kb, size_t row_bytes) {
  const size_t rows = static_cast<size_t>(per * cap);
  return MessageLayout{rows * row_bytes, rows * static_cast<size_t>(kb) * 4, rows * 2 * 4};
}

// Where src's rows for local expert e start among the receiver's rows of e: after those of
// lower sources. counts[src * num_experts + global expert].
int64_t first_row_of(const std::vector<int32_t>& counts, int64_t num_experts, int src, int64_t expert) {
  int64_t row = 0;
  for (int s = 0; s < src; ++s) row += counts[static_cast<size_t>(s * num_experts + expert)];
  return row;
}

void check_float_input(const Tensor& t, const char* what, const char* name) {
  CACHALOT_CHECK_ARG(t.is_contiguous() && (t.dtype() == DType::kF32 || t.dtype() == DType::kBF16),
                     "ep {}: {} must be contiguous F32 or BF16, got {}", what, name, t.description());
}

}  // namespace

PendingDispatch Buffer::low_latency_dispatch(const Tensor& x, const Tensor& topk_idx, int64_t max_tokens,
                                             int64_t num_experts, bool use_fp8, bool allow_in_place) {
  trace::Span span("ep_ll_dispatch_send", "ep");
  const int world = world_size();
  check_float_input(x, "low_latency_dispatch", "x");
  CACHALOT_CHECK_ARG(x.dim() == 2, "ep low_latency_dispatch: x must be [tokens, hidden], got {}", x.description());
  const int64_t tokens = x.size(0), hidden = x.size(1);
  CACHALOT_CHECK_ARG(tokens <= max_tokens, "ep low_latency_dispatch: {} tokens, more than max_tokens {}", tokens, max_tokens);
  const std::vector<int32_t> topk = detail::read_topk(topk_idx, num_experts, "low_latency_dispatch");
  CACHALOT_CHECK_ARG(topk_idx.size(0) == tokens, "ep low_latency_dispatch: {} tokens in x, {} in topk_idx", tokens,
                     topk_idx.size(0));
  const int64_t k = topk_idx.size(1), per = detail::experts_per_rank(num_experts, world, "low_latency_dispatch");
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t a = 0; a < k; ++a)
      for (int64_t b = a + 1; b < k; ++b)
        CACHALOT_CHECK_ARG(topk[t * k + a] < 0 || topk[t * k + a] != topk[t * k + b],
                           "ep low_latency_dispatch: token {} lists expert {} twice", t, topk[t * k + a]);
  span.arg("tokens", tokens);

  // The payload: FP8 + scales, or the rows as given.
  gemm::Fp8Tensor q;
  if (use_fp8) q = gemm::quantize_activations(x);
  const Tensor& rows = use_fp8 ? q.data : x;
  const int64_t kb = use_fp8 ? (hidden + 127) / 128 : 0;
  const size_t row_bytes = static_cast<size_t>(hidden) * rows.element_size();

  PendingDispatch p;
  p.buffer_ = this;
  p.fp8_ = use_fp8;
  p.dtype_ = rows.dtype();
  p.handle_.num_tokens = tokens;
  p.handle_.num_experts = num_experts;
  p.handle_.max_tokens = max_tokens;
  p.handle_.hidden = hidden;
  p.handle_.topk_idx = Tensor::empty(DType::kI32, {tokens, k});
  std::copy(topk.begin(), topk.end(), p.handle_.topk_idx.mutable_data<int32_t>());

  std::vector<std::vector<Pair>> pairs(static_cast<size_t>(world));
  for (int d = 0; d < world; ++d) pairs[d] = pairs_for(topk, k, d, per);
  p.slot_ = next_slot();
  const auto* bytes = static_cast<const std::byte*>(rows.raw_data());
  const int64_t cap = static_cast<int64_t>(world) * max_tokens;
  const MessageLayout masked = in_place_sections(per, cap, kb, row_bytes);
  // In place when the transport shares memory, the slot holds the masked layout and the counts
  // fit one all-gather (every rank decides alike: the inputs are the same on all).
  if (allow_in_place && transport_->shares_memory() && masked.total() <= transport_->options().slot_bytes &&
      static_cast<size_t>(num_experts) * 4 <= transport_->options().control_bytes) {
    // Notify: every rank learns how many pairs every rank sends to every expert, so each knows
    // where its rows go among each receiver's (sources in rank order, then tokens ascending).
    std::vector<int32_t> mine(static_cast<size_t>(num_experts), 0);
    for (int d = 0; d < world; ++d)
      for (const Pair& pr : pairs[d]) ++mine[static_cast<size_t>(d * per + pr.expert)];
    p.counts_.resize(static_cast<size_t>(world * num_experts));
    transport_->all_gather(std::as_bytes(std::span(mine)), std::as_writable_bytes(std::span(p.counts_)));
    p.handle_.in_place_bytes = masked.total();
    p.handle_.rows_at.assign(static_cast<size_t>(world), {});
    for (int d = 0; d < world; ++d) {
      const std::span<std::byte> m = transport_->send_window(p.slot_, d, 0, masked.total());
      auto* x_rows = masked.section<std::byte>(m, kMaskedRows);
      auto* x_scales = masked.section<float>(m, kMaskedScales);
      auto* src_info = masked.section<int32_t>(m, kMaskedSrcInfo);
      int64_t row = 0, expert = -1;
      for (const Pair& pr : pairs[d]) {
        if (pr.expert != expert) {
          expert = pr.expert;
          row = expert * cap + first_row_of(p.counts_, num_experts, rank(), d * per + expert);
        }
        std::memcpy(x_rows + static_cast<size_t>(row) * row_bytes, bytes + static_cast<size_t>(pr.token) * row_bytes, row_bytes);
        if (use_fp8) std::copy_n(q.scales.data<float>() + pr.token * kb, kb, x_scales + row * kb);
        src_info[2 * row] = rank();
        src_info[2 * row + 1] = pr.token;
        p.handle_.rows_at[d].push_back(row);
        ++row;
      }
    }
    transport_->post(p.slot_, std::vector<size_t>(static_cast<size_t>(world), 0),
                     std::vector<size_t>(static_cast<size_t>(world), masked.total()));
    return p;
  }
  std::vector<size_t> sizes(static_cast<size_t>(world));
  for (int d = 0; d < world; ++d) sizes[d] = dispatch_sections(pairs[d].size(), kb, row_bytes).total();
  detail::send_messages(*transport_, p.slot_, region_bytes(), sizes, [&](int dst, std::span<std::byte> m) {
    const std::vector<Pair>& ps = pairs[dst];
    const MessageLayout s = dispatch_sections(ps.size(), kb, row_bytes);
    write_header(m, {MessageStatus::kOk, static_cast<uint32_t>(ps.size()), 0, 0});
    int32_t* meta = s.section<int32_t>(m, kMeta);
    float* scales = s.section<float>(m, kScales);
    std::byte* out = s.section<std::byte>(m, kRows);
    for (size_t i = 0; i < ps.size(); ++i) {
      meta[2 * i] = ps[i].expert;
      meta[2 * i + 1] = ps[i].token;
      if (use_fp8) std::copy_n(q.scales.data<float>() + ps[i].token * kb, kb, scales + i * kb);
      std::memcpy(out + i * row_bytes, bytes + static_cast<size_t>(ps[i].token) * row_bytes, row_bytes);
    }
  });
  post_regions(p.slot_);
  return p;
}

LowLatencyRecv PendingDispatch::receive() {
  CACHALOT_CHECK_ARG(buffer_ != nullptr, "ep: receive() on a dispatch that was not posted or was received already");
  trace::Span span("ep_ll_dispatch_recv", "ep");
  Buffer& b = *std::exchange(buffer_, nullptr);
  const bool in_place = handle_.in_place_bytes > 0;
  Transport& t = b.complete_round(slot_, "low_latency_dispatch", /*has_headers=*/!in_place);
  const int world = t.world_size();
  LowLatencyHandle& h = handle_;
  const int64_t per = h.num_experts / world, cap = static_cast<int64_t>(world) * h.max_tokens, hidden = h.hidden;
  const int64_t kb = fp8_ ? (hidden + 127) / 128 : 0;
  const size_t row_bytes = static_cast<size_t>(hidden) * dtype_size(dtype_);
  LowLatencyRecv r;
  r.count.assign(static_cast<size_t>(per), 0);
  h.rows_from.assign(static_cast<size_t>(world), {});
  if (in_place) {
    // The rows are where the senders put them: the result views the slot.
    const MessageLayout s = in_place_sections(per, cap, kb, row_bytes);
    const std::span<const std::byte> m = t.received(slot_, 0);
    r.x = Tensor::view(s.section<std::byte>(m, kMaskedRows), dtype_, {per, cap, hidden}, nullptr);
    if (fp8_) r.scales = Tensor::view(s.section<float>(m, kMaskedScales), DType::kF32, {per, cap, kb}, nullptr);
    r.src_info = Tensor::view(s.section<int32_t>(m, kMaskedSrcInfo), DType::kI32, {per, cap, 2}, nullptr);
    const int me = t.rank();
    for (int src = 0; src < world; ++src)
      for (int64_t e = 0; e < per; ++e) {
        const int32_t n = counts_[static_cast<size_t>(src * h.num_experts + me * per + e)];
        const int64_t first = e * cap + first_row_of(counts_, h.num_experts, src, me * per + e);
        for (int32_t i = 0; i < n; ++i) h.rows_from[src].push_back(first + i);
        r.count[e] += n;
      }
    r.handle = std::move(h);
    return r;
  }
  r.x = b.reusable(slot_, 0, dtype_, {per, cap, hidden});
  if (fp8_) r.scales = b.reusable(slot_, 1, DType::kF32, {per, cap, kb});
  r.src_info = b.reusable(slot_, 2, DType::kI32, {per, cap, 2});
  auto* x = static_cast<std::byte*>(r.x.mutable_raw_data());
  for (int src = 0; src < world; ++src) {
    const std::span<const std::byte> m = t.received(slot_, src);
    const size_t n = read_header(m).rows;
    const MessageLayout s = dispatch_sections(n, kb, row_bytes);
    const int32_t* meta = s.section<int32_t>(m, kMeta);
    const float* scales = s.section<float>(m, kScales);
    const std::byte* rows = s.section<std::byte>(m, kRows);
    for (size_t i = 0; i < n; ++i) {
      const int32_t e = meta[2 * i];
      CACHALOT_CHECK_ARG(e >= 0 && e < per && r.count[e] < cap, "ep low_latency_dispatch: rank {} sent a bad pair", src);
      const int64_t row = e * cap + r.count[e]++;
      std::memcpy(x + static_cast<size_t>(row) * row_bytes, rows + i * row_bytes, row_bytes);
      if (fp8_) std::copy_n(scales + i * kb, kb, r.scales.mutable_data<float>() + row * kb);
      r.src_info.mutable_data<int32_t>()[2 * row] = src;
      r.src_info.mutable_data<int32_t>()[2 * row + 1] = meta[2 * i + 1];
      h.rows_from[src].push_back(row);
    }
  }
  r.handle = std::move(h);
  return r;
}

PendingCombine Buffer::low_latency_combine(const Tensor& expert_out, const Tensor& topk_weights,
                                           const LowLatencyHandle& handle) {
  trace::Span span("ep_ll_combine_send", "ep");
  const int world = world_size();
  check_float_input(expert_out, "low_latency_combine", "expert_out");
  const int64_t per = handle.num_experts / world, cap = static_cast<int64_t>(world) * handle.max_tokens;
  CACHALOT_CHECK_ARG(handle.rows_from.size() == static_cast<size_t>(world), "ep low_latency_combine: the handle is not from a received dispatch");
  CACHALOT_CHECK_ARG(expert_out.dim() == 3 && expert_out.size(0) == per && expert_out.size(1) == cap &&
                         expert_out.size(2) == handle.hidden,
                     "ep low_latency_combine: expert_out must be [{}, {}, {}], got {}", per, cap, handle.hidden,
                     expert_out.description());
  const int64_t tokens = handle.num_tokens, k = handle.topk_idx.size(1);
  CACHALOT_CHECK_ARG(topk_weights.dtype() == DType::kF32 && topk_weights.dim() == 2 && topk_weights.size(0) == tokens &&
                         topk_weights.size(1) == k,
                     "ep low_latency_combine: topk_weights must be F32 [{}, {}], got {}", tokens, k,
                     topk_weights.description());
  PendingCombine p;
  p.buffer_ = this;
  p.dtype_ = expert_out.dtype();
  p.topk_weights = topk_weights;
  p.handle_ = handle;
  // Zero copy: expert_out is this slot's combine buffer; its rows stay where they are.
  const std::byte* zero_copy_at = std::exchange(combine_buffer_[slot_], nullptr);
  p.slot_ = next_slot();
  if (zero_copy_at != nullptr && expert_out.raw_data() == zero_copy_at) {
    CACHALOT_CHECK_ARG(combine_offset_[p.slot_] == handle.in_place_bytes,
                       "ep low_latency_combine: the combine buffer was made for another dispatch's handle");
    p.zero_copy_ = true;
    p.offset_ = handle.in_place_bytes;
    // Nothing is sent; the regions are posted as for messages so that a peer which sent some
    // (it did not pass its buffer) is reported by receive() rather than by the transport.
    post_regions(p.slot_);
    return p;
  }
  const size_t row_bytes = static_cast<size_t>(handle.hidden) * expert_out.element_size();
  std::vector<size_t> sizes(static_cast<size_t>(world));
  for (int d = 0; d < world; ++d) sizes[d] = MessageLayout{handle.rows_from[d].size() * row_bytes}.total();
  const auto* bytes = static_cast<const std::byte*>(expert_out.raw_data());
  detail::send_messages(*transport_, p.slot_, region_bytes(), sizes, [&](int dst, std::span<std::byte> m) {
    const std::vector<int64_t>& rows = handle.rows_from[dst];
    write_header(m, {MessageStatus::kOk, static_cast<uint32_t>(rows.size()), 0, 0});
    std::byte* out = m.data() + sizeof(MessageHeader);
    for (size_t i = 0; i < rows.size(); ++i)
      std::memcpy(out + i * row_bytes, bytes + static_cast<size_t>(rows[i]) * row_bytes, row_bytes);
  });
  post_regions(p.slot_);
  return p;
}

Tensor PendingCombine::receive() {
  CACHALOT_CHECK_ARG(buffer_ != nullptr, "ep: receive() on a combine that was not posted or was received already");
  trace::Span span("ep_ll_combine_recv", "ep");
  Buffer& b = *std::exchange(buffer_, nullptr);
  Transport& t = b.complete_round(slot_, "low_latency_combine", /*has_headers=*/false);
  const int world = t.world_size();
  const LowLatencyHandle& h = handle_;
  const int64_t tokens = h.num_tokens, k = h.topk_idx.size(1), hidden = h.hidden, per = h.num_experts / world;
  const int64_t cap = static_cast<int64_t>(world) * h.max_tokens;
  const std::vector<int32_t> topk(h.topk_idx.data<int32_t>(), h.topk_idx.data<int32_t>() + tokens * k);
  // A rank that passed its combine buffer sent an empty message (no header).
  for (int src = 0; src < world; ++src) {
    const bool passed = t.received(slot_, src).empty();
    if (passed == zero_copy_) continue;
    // Every rank says it is done (the ones that pulled wait for all): the group stays usable.
    t.done_reading(slot_);
    raise(ErrorKind::kInvalidArgument,
          "ep low_latency_combine: rank {} {} its combine buffer and rank {} {}: every rank must pass it, or none", src,
          passed ? "passed" : "did not pass", t.rank(), zero_copy_ ? "did" : "did not");
  }
  if (!zero_copy_) b.check_overflow(slot_, "low_latency_combine");
  detail::RowSums sums(tokens, hidden);
  for (int dst = 0; dst < world; ++dst) {
    const std::vector<Pair> pairs = pairs_for(topk, k, dst, per);
    const std::span<const std::byte> m = t.received(slot_, dst);
    // Zero copy: pair i's output is row rows_at[dst][i] of dst's buffer. Messages: the outputs
    // come back in the order this rank sent the pairs.
    Tensor rows;
    const int64_t* at = nullptr;
    if (zero_copy_) {
      CACHALOT_ASSERT(h.rows_at.at(static_cast<size_t>(dst)).size() == pairs.size());
      const size_t bytes = static_cast<size_t>(per * cap * hidden) * dtype_size(dtype_);
      rows = Tensor::view(t.peer_area(slot_, dst, offset_, bytes).data(), dtype_, {per * cap, hidden}, nullptr);
      at = h.rows_at[static_cast<size_t>(dst)].data();
    } else {
      CACHALOT_CHECK_ARG(read_header(m).rows == pairs.size(), "ep low_latency_combine: rank {} returned {} rows for {} pairs",
                         dst, read_header(m).rows, pairs.size());
      rows = Tensor::view(m.data() + sizeof(MessageHeader), dtype_, {static_cast<int64_t>(pairs.size()), hidden}, nullptr);
    }
    for (size_t i = 0; i < pairs.size(); ++i)
      sums.add(pairs[i].token, rows, at ? at[i] : static_cast<int64_t>(i),
               topk_weights.data<float>()[pairs[i].token * k + pairs[i].slot]);
  }
  Tensor y = sums.sum();
  if (zero_copy_) t.done_reading(slot_);
  return y;
}

Tensor Buffer::low_latency_combine_buffer(const LowLatencyHandle& handle, DType dtype) {
  const int world = world_size();
  CACHALOT_CHECK_ARG(dtype == DType::kF32 || dtype == DType::kBF16, "ep low_latency_combine_buffer: F32 or BF16, got {}",
                     dtype_name(dtype));
  CACHALOT_CHECK_ARG(handle.rows_from.size() == static_cast<size_t>(world),
                     "ep low_latency_combine_buffer: the handle is not from a received dispatch");
  const int64_t per = handle.num_experts / world, cap = static_cast<int64_t>(world) * handle.max_tokens;
  const Dims shape{per, cap, handle.hidden};
  const size_t bytes = static_cast<size_t>(per * cap * handle.hidden) * dtype_size(dtype);
  const int slot = slot_;  // the next operation's
  if (handle.in_place_bytes > 0 && transport_->shares_memory() &&
      handle.in_place_bytes + bytes <= transport_->options().slot_bytes) {
    // After this slot's in-place layout (the dispatch whose rows the experts are reading may
    // be in this slot).
    const std::span<std::byte> area = transport_->own_area(slot, handle.in_place_bytes, bytes);
    combine_buffer_[slot] = area.data();
    combine_offset_[slot] = handle.in_place_bytes;
    return Tensor::view(area.data(), dtype, shape, contiguous_strides(shape), nullptr, true);
  }
  combine_buffer_[slot] = nullptr;
  return reusable(slot, 3, dtype, shape);
}

Tensor Buffer::reusable(int slot, int which, DType dtype, Dims shape) {
  Tensor& kept = reusable_[slot][which];
  if (!kept.defined() || kept.dtype() != dtype || !(kept.shape() == shape)) kept = Tensor::empty(dtype, shape);
  return kept;
}

size_t Buffer::low_latency_in_place_slot_bytes(int world, int64_t max_tokens, int64_t hidden, int64_t local_experts,
                                               size_t elem_bytes) {
  const int64_t kb = elem_bytes == 1 ? (hidden + 127) / 128 : 0;
  return in_place_sections(local_experts, world * max_tokens, kb, static_cast<size_t>(hidden) * elem_bytes).total();
}

size_t Buffer::low_latency_zero_copy_slot_bytes(int world, int64_t max_tokens, int64_t hidden, int64_t local_experts,
                                                size_t dispatch_elem, size_t combine_elem) {
  return low_latency_in_place_slot_bytes(world, max_tokens, hidden, local_experts, dispatch_elem) +
         static_cast<size_t>(local_experts * world * max_tokens * hidden) * combine_elem;
}

size_t Buffer::low_latency_slot_bytes(int world, int64_t max_tokens, int64_t hidden, int64_t k, int64_t local_experts) {
  const size_t pairs = static_cast<size_t>(max_tokens * std::min(k, local_experts));
  const size_t dispatch = dispatch_sections(pairs, 0, static_cast<size_t>(hidden) * 4).total();  // F32 rows at most
  return dispatch * static_cast<size_t>(world);
}

}  // namespace cachalot::ep
