// ep::Buffer: construction, the pieces every operation shares, and normal mode.
#include "ep/buffer.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "core/trace.h"
#include "core/vector_ops.h"
#include "ep/buffer_internal.h"
#include "ep/message.h"

namespace cachalot::ep {

namespace detail {

std::vector<int32_t> read_topk(const Tensor& topk_idx, int64_t num_experts, const char* what) {
  CACHALOT_CHECK_ARG(topk_idx.dim() == 2 && topk_idx.is_contiguous(), "ep {}: topk_idx must be contiguous [tokens, k], got {}",
                     what, topk_idx.description());
  const int64_t n = topk_idx.numel();
  std::vector<int32_t> out(static_cast<size_t>(n));
  if (topk_idx.dtype() == DType::kI64) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(std::clamp<int64_t>(topk_idx.data<int64_t>()[i], -2, num_experts));
  } else {
    CACHALOT_CHECK_ARG(topk_idx.dtype() == DType::kI32, "ep {}: topk_idx must be I32 or I64, got {}", what,
                       topk_idx.description());
    std::copy_n(topk_idx.data<int32_t>(), n, out.data());
  }
  for (int64_t i = 0; i < n; ++i)
    CACHALOT_CHECK_ARG(out[i] >= -1 && out[i] < num_experts, "ep {}: expert id {} at [{}, {}] is outside -1..{}", what,
                       out[i], i / topk_idx.size(1), i % topk_idx.size(1), num_experts - 1);
  return out;
}

int64_t experts_per_rank(int64_t num_experts, int world, const char* what) {
  CACHALOT_CHECK_ARG(num_experts > 0 && num_experts % world == 0, "ep {}: {} experts do not split evenly over {} ranks",
                     what, num_experts, world);
  return num_experts / world;
}

std::vector<int32_t> tokens_per_local_expert(const Tensor& local_topk_idx, int64_t local_experts) {
  std::vector<int32_t> count(static_cast<size_t>(local_experts), 0);
  for (int64_t i = 0; i < local_topk_idx.numel(); ++i)
    if (const int32_t e = local_topk_idx.data<int32_t>()[i]; e >= 0) ++count[e];
  return count;
}

void RowSums::add(int64_t out, const Tensor& rows, int64_t row, float w) {
  CACHALOT_ASSERT(out >= 0 && out < outputs_ && rows.size(-1) == hidden_);
  CACHALOT_ASSERT(entries_.empty() || rows.dtype() == dtype_);
  dtype_ = rows.dtype();
  entries_.push_back({out, static_cast<const std::byte*>(rows.raw_data()) + row * hidden_ * rows.element_size(), w});
}

Tensor RowSums::sum() const {
  // Entries grouped by output row, keeping their order (a stable counting sort).
  std::vector<size_t> start(static_cast<size_t>(outputs_) + 1, 0);
  for (const Entry& e : entries_) ++start[e.out + 1];
  for (int64_t o = 0; o < outputs_; ++o) start[o + 1] += start[o];
  std::vector<const void*> rows(entries_.size());
  std::vector<float> weights(entries_.size());
  std::vector<size_t> next(start.begin(), start.end() - 1);
  for (const Entry& e : entries_) {
    rows[next[e.out]] = e.row;
    weights[next[e.out]++] = e.w;
  }
  Tensor y = Tensor::empty(DType::kF32, {outputs_, hidden_});
  float* out = y.mutable_data<float>();
  const size_t h = static_cast<size_t>(hidden_);
  for (int64_t o = 0; o < outputs_; ++o) {
    const size_t first = start[o], count = start[o + 1] - first;
    if (dtype_ == DType::kBF16)
      weighted_sum(out + o * hidden_, reinterpret_cast<const bf16* const*>(rows.data() + first), weights.data() + first, count, h);
    else
      weighted_sum(out + o * hidden_, reinterpret_cast<const float* const*>(rows.data() + first), weights.data() + first, count, h);
  }
  return y;
}

}  // namespace detail

using detail::read_topk;

int Buffer::next_slot() {
  const int slot = slot_;
  // Another operation would reuse the slot under the outputs written there (peers' messages
  // land anywhere in it).
  CACHALOT_CHECK_ARG(combine_buffer_[slot] == nullptr,
                     "ep: a low-latency combine buffer was handed out for this operation; the next operation must be "
                     "the low_latency_combine of it");
  slot_ ^= 1;
  return slot;
}

size_t Buffer::region_bytes() const {
  return transport_->options().slot_bytes / static_cast<size_t>(transport_->world_size()) / 64 * 64;
}

void Buffer::post_regions(int slot) {
  const size_t world = static_cast<size_t>(world_size()), region = region_bytes();
  std::vector<size_t> offset(world), max(world, region);
  for (size_t r = 0; r < world; ++r) offset[r] = r * region;
  transport_->post(slot, offset, max);
}

Transport& Buffer::complete_round(int slot, const char* what, bool has_headers) {
  transport_->wait(slot);
  if (has_headers) check_overflow(slot, what);
  return *transport_;
}

void Buffer::check_overflow(int slot, const char* what) {
  for (int src = 0; src < world_size(); ++src) {
    const MessageHeader h = read_header(transport_->received(slot, src));
    if (h.status == MessageStatus::kOverflow)
      raise(ErrorKind::kResourceExhausted,
            "ep {}: rank {} had a {}-byte message for a {}-byte region (slot_bytes {} / {} ranks); raise the transport's "
            "slot_bytes (Buffer::normal_slot_bytes / low_latency_slot_bytes size it)",
            what, src, h.needed_bytes, h.region_bytes, transport_->options().slot_bytes, world_size());
  }
}

size_t Buffer::max_message_bytes() const {
  const size_t region = region_bytes();
  return region > sizeof(MessageHeader) ? region - sizeof(MessageHeader) : 0;
}

std::vector<std::span<const std::byte>> Buffer::exchange(std::span<const std::span<const std::byte>> to_each) {
  const size_t world = static_cast<size_t>(world_size());
  CACHALOT_CHECK_ARG(to_each.size() == world, "ep exchange: {} messages for {} ranks", to_each.size(), world);
  const int slot = next_slot();
  std::vector<size_t> sizes(world);
  for (size_t dst = 0; dst < world; ++dst) sizes[dst] = sizeof(MessageHeader) + to_each[dst].size();
  detail::send_messages(*transport_, slot, region_bytes(), sizes, [&](int dst, std::span<std::byte> m) {
    const std::span<const std::byte> payload = to_each[static_cast<size_t>(dst)];
    write_header(m, {MessageStatus::kOk, 0, payload.size(), region_bytes()});
    if (!payload.empty()) std::memcpy(m.data() + sizeof(MessageHeader), payload.data(), payload.size());
  });
  post_regions(slot);
  Transport& t = complete_round(slot, "exchange");
  std::vector<std::span<const std::byte>> got(world);
  for (int src = 0; src < world_size(); ++src) {
    const std::span<const std::byte> m = t.received(slot, src);
    const MessageHeader h = read_header(m);
    CACHALOT_ASSERT(sizeof(MessageHeader) + h.needed_bytes <= m.size());
    got[static_cast<size_t>(src)] = m.subspan(sizeof(MessageHeader), h.needed_bytes);
  }
  return got;
}

void detail::send_messages(Transport& t, int slot, size_t region, std::span<const size_t> sizes,
                           const std::function<void(int, std::span<std::byte>)>& fill) {
  const size_t worst = *std::max_element(sizes.begin(), sizes.end());
  for (int dst = 0; dst < t.world_size(); ++dst) {
    const size_t offset = static_cast<size_t>(t.rank()) * region;
    if (worst > region) {
      // Everyone hears of it, so every rank fails the operation and none waits for the next.
      write_header(t.send_window(slot, dst, offset, sizeof(MessageHeader)),
                   {MessageStatus::kOverflow, 0, worst, region});
    } else {
      fill(dst, t.send_window(slot, dst, offset, sizes[dst]));
    }
  }
}

DispatchLayout Buffer::get_dispatch_layout(const Tensor& topk_idx, int64_t num_experts) const {
  const std::vector<int32_t> topk = read_topk(topk_idx, num_experts, "get_dispatch_layout");
  const int world = world_size();
  const int64_t per = detail::experts_per_rank(num_experts, world, "get_dispatch_layout");
  const int64_t tokens = topk_idx.size(0), k = topk_idx.size(1), per_node = transport_->ranks_per_node();
  DispatchLayout l;
  l.num_tokens = tokens;
  l.num_experts = num_experts;
  l.tokens_per_rank.assign(static_cast<size_t>(world), 0);
  l.tokens_per_node.assign(static_cast<size_t>(transport_->num_nodes()), 0);
  l.tokens_per_expert.assign(static_cast<size_t>(num_experts), 0);
  l.is_token_in_rank.assign(static_cast<size_t>(tokens * world), 0);
  std::vector<uint8_t> in_node(l.tokens_per_node.size());
  for (int64_t t = 0; t < tokens; ++t) {
    std::fill(in_node.begin(), in_node.end(), 0);
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = topk[t * k + j];
      if (e < 0) continue;
      ++l.tokens_per_expert[e];
      const int64_t r = e / per;
      uint8_t& in = l.is_token_in_rank[t * world + r];
      if (!in) ++l.tokens_per_rank[r];
      in = 1;
      if (!in_node[r / per_node]) ++l.tokens_per_node[r / per_node];
      in_node[r / per_node] = 1;
    }
  }
  return l;
}

namespace {

using detail::dispatch_sections;
using detail::RowWriter;
using namespace detail::dispatch_section;

// In-place dispatch over a transport that shares memory: returns recv_begin (rows received
// from each source, as prefix sums).
std::vector<int64_t> send_in_place(Transport& transport, int slot, const RowWriter& writer, const DispatchLayout& layout) {
    const int world = transport.world_size(), me = transport.rank();
  // Notify: every rank learns how many rows every rank sends to every rank, so each receiver's
  // layout (sources in rank order) is known to all, and so is whether it fits.
  std::vector<int32_t> counts(static_cast<size_t>(world * world));
  transport.all_gather(std::as_bytes(std::span(layout.tokens_per_rank)), std::as_writable_bytes(std::span(counts)));
  const size_t slot_bytes = transport.options().slot_bytes;
  std::vector<int64_t> received(static_cast<size_t>(world), 0);
  for (int dst = 0; dst < world; ++dst) {
    for (int src = 0; src < world; ++src) received[dst] += counts[src * world + dst];
    const size_t need = dispatch_sections(received[dst], writer.k, writer.kb, writer.row_bytes).total();
    if (need > slot_bytes)
      raise(ErrorKind::kResourceExhausted,
            "ep dispatch: rank {} would receive {} rows ({} bytes) in a {}-byte slot; raise the transport's slot_bytes "
            "(Buffer::normal_slot_bytes sizes it)",
            dst, received[dst], need, slot_bytes);
  }
  std::vector<int64_t> recv_begin(static_cast<size_t>(world) + 1, 0);
  for (int src = 0; src < world; ++src) recv_begin[src + 1] = recv_begin[src] + counts[src * world + me];
  std::vector<MessageLayout> sections;
  std::vector<std::span<std::byte>> windows;
  std::vector<int64_t> next_row(static_cast<size_t>(world), 0);  // my rows start after lower ranks'
  for (int dst = 0; dst < world; ++dst) {
    sections.push_back(dispatch_sections(received[dst], writer.k, writer.kb, writer.row_bytes));
    for (int src = 0; src < me; ++src) next_row[dst] += counts[src * world + dst];
    // Every sender's window spans the receiver's whole layout; each writes only its own rows.
    windows.push_back(transport.send_window(slot, dst, 0, sections.back().total()));
  }
  // A block of tokens at a time, to each destination in turn: the block's rows of x stay in
  // cache between destinations (each row is read from memory once, not once per destination:
  // ~5 times at 8 ranks), and each destination's rows are still written as one run (token by
  // token to every destination interleaved 6 x ranks write streams, which lost at 2 ranks).
  constexpr int64_t kTokensPerBlock = 32;
  for (int64_t t0 = 0; t0 < layout.num_tokens; t0 += kTokensPerBlock)
    for (int dst = 0; dst < world; ++dst)
      for (int64_t t = t0; t < std::min(layout.num_tokens, t0 + kTokensPerBlock); ++t)
        if (layout.is_token_in_rank[t * world + dst]) writer.write(windows[dst], sections[dst], dst, t, next_row[dst]++);
  const size_t mine = sections[me].total();
  transport.post(slot, std::vector<size_t>(static_cast<size_t>(world), 0), std::vector<size_t>(static_cast<size_t>(world), mine));
  return recv_begin;
}

}  // namespace

PendingNormalDispatch Buffer::dispatch_async(const Tensor& x, const Tensor& x_scales, const Tensor& topk_idx,
                                             const Tensor& topk_weights, const DispatchLayout& layout,
                                             const DispatchOptions& options) {
  trace::Span span("ep_dispatch_send", "ep");
  const int world = world_size();
  CACHALOT_CHECK_ARG(x.dim() == 2 && x.is_contiguous(), "ep dispatch: x must be contiguous [tokens, hidden], got {}",
                     x.description());
  const bool fp8 = x.dtype() == DType::kF8E4M3;
  CACHALOT_CHECK_ARG(fp8 || x.dtype() == DType::kF32 || x.dtype() == DType::kBF16,
                     "ep dispatch: x must be F32, BF16 or F8_E4M3, got {}", x.description());
  const int64_t tokens = x.size(0), hidden = x.size(1), kb = fp8 ? (hidden + 127) / 128 : 0;
  CACHALOT_CHECK_ARG(fp8 == x_scales.defined() && (!fp8 || (x_scales.dtype() == DType::kF32 && x_scales.dim() == 2 &&
                                                            x_scales.size(0) == tokens && x_scales.size(1) == kb)),
                     "ep dispatch: FP8 x needs F32 scales [{}, {}] (and only FP8 x takes scales); got {}", tokens, kb,
                     x_scales.defined() ? x_scales.description() : std::string("none"));
  const std::vector<int32_t> topk = read_topk(topk_idx, layout.num_experts, "dispatch");
  const int64_t k = topk_idx.size(1), per = detail::experts_per_rank(layout.num_experts, world, "dispatch");
  CACHALOT_CHECK_ARG(topk_idx.size(0) == tokens && layout.num_tokens == tokens,
                     "ep dispatch: {} tokens in x, {} in topk_idx, {} in the layout", tokens, topk_idx.size(0),
                     layout.num_tokens);
  CACHALOT_CHECK_ARG(topk_weights.dtype() == DType::kF32 && topk_weights.dim() == 2 && topk_weights.size(0) == tokens &&
                         topk_weights.size(1) == k && topk_weights.is_contiguous(),
                     "ep dispatch: topk_weights must be F32 [{}, {}], got {}", tokens, k, topk_weights.description());
  span.arg("tokens", tokens).arg("hidden", hidden);
  const size_t row_bytes = static_cast<size_t>(hidden) * x.element_size();

  PendingNormalDispatch p;
  p.buffer_ = this;
  p.slot_ = next_slot();
  p.dtype_ = x.dtype();
  p.hidden_ = hidden;
  p.k_ = k;
  p.experts_per_rank_ = per;
  p.handle_.num_tokens = tokens;
  p.handle_.is_token_in_rank = layout.is_token_in_rank;
  const RowWriter writer{topk, topk_weights, x_scales, static_cast<const std::byte*>(x.raw_data()), k, kb, per, row_bytes,
                         rank()};
  if (internode()) {
    p.internode_ = true;
    post_internode_dispatch(p.slot_, writer, layout);
    return p;
  }
  if (options.in_place && transport_->shares_memory()) {
    p.in_place_ = true;
    p.handle_.recv_begin = send_in_place(*transport_, p.slot_, writer, layout);
    return p;
  }
  // One message per destination: the tokens it holds an expert of, ascending.
  std::vector<size_t> sizes(static_cast<size_t>(world));
  for (int d = 0; d < world; ++d) sizes[d] = dispatch_sections(layout.tokens_per_rank[d], k, kb, row_bytes).total();
  detail::send_messages(*transport_, p.slot_, region_bytes(), sizes, [&](int dst, std::span<std::byte> m) {
    const int64_t rows = layout.tokens_per_rank[dst];
    const MessageLayout s = dispatch_sections(rows, k, kb, row_bytes);
    write_header(m, {MessageStatus::kOk, static_cast<uint32_t>(rows), 0, 0});
    int64_t i = 0;
    for (int64_t t = 0; t < tokens; ++t)
      if (layout.is_token_in_rank[t * world + dst]) writer.write(m, s, dst, t, i++);
    CACHALOT_ASSERT(i == rows);
  });
  post_regions(p.slot_);
  return p;
}

DispatchResult PendingNormalDispatch::receive() {
  CACHALOT_CHECK_ARG(buffer_ != nullptr, "ep: receive() on a dispatch that was not posted or was received already");
  trace::Span span("ep_dispatch_recv", "ep");
  if (internode_) return std::exchange(buffer_, nullptr)->receive_internode_dispatch(*this);
  Transport& t = std::exchange(buffer_, nullptr)->complete_round(slot_, "dispatch", /*has_headers=*/!in_place_);
  const int world = t.world_size();
  const bool fp8 = dtype_ == DType::kF8E4M3;
  const int64_t hidden = hidden_, k = k_, kb = fp8 ? (hidden + 127) / 128 : 0;
  const size_t row_bytes = static_cast<size_t>(hidden) * dtype_size(dtype_);
  DispatchResult r;
  if (in_place_) {
    // The rows are where the senders put them: the result views the slot.
    r.handle = std::move(handle_);
    const int64_t n = r.handle.recv_begin.back();
    const MessageLayout s = dispatch_sections(n, k, kb, row_bytes);
    const std::span<const std::byte> m = t.received(slot_, 0);
    r.x = Tensor::view(s.section<std::byte>(m, kRows), dtype_, {n, hidden}, nullptr);
    if (fp8) r.scales = Tensor::view(s.section<float>(m, kScales), DType::kF32, {n, kb}, nullptr);
    r.topk_idx = Tensor::view(s.section<int32_t>(m, kTopkIdx), DType::kI32, {n, k}, nullptr);
    r.topk_weights = Tensor::view(s.section<float>(m, kTopkWeights), DType::kF32, {n, k}, nullptr);
    r.src_index = Tensor::view(s.section<int32_t>(m, kSrcIndex), DType::kI32, {n}, nullptr);
    r.tokens_per_local_expert = detail::tokens_per_local_expert(r.topk_idx, experts_per_rank_);
    return r;
  }
  r.handle = std::move(handle_);
  r.handle.recv_begin.assign(static_cast<size_t>(world) + 1, 0);
  for (int src = 0; src < world; ++src)
    r.handle.recv_begin[src + 1] = r.handle.recv_begin[src] + read_header(t.received(slot_, src)).rows;
  const int64_t n = r.handle.recv_begin.back();
  r.x = Tensor::empty(dtype_, {n, hidden});
  r.scales = fp8 ? Tensor::empty(DType::kF32, {n, kb}) : Tensor();
  r.topk_idx = Tensor::empty(DType::kI32, {n, k});
  r.topk_weights = Tensor::empty(DType::kF32, {n, k});
  r.src_index = Tensor::empty(DType::kI32, {n});
  // A source's rows are contiguous in the output: one copy per section.
  for (int src = 0; src < world; ++src) {
    const std::span<const std::byte> m = t.received(slot_, src);
    const int64_t begin = r.handle.recv_begin[src], rows = r.handle.recv_begin[src + 1] - begin;
    if (rows == 0) continue;
    const MessageLayout s = dispatch_sections(rows, k, kb, row_bytes);
    std::copy_n(s.section<int32_t>(m, kSrcIndex), rows, r.src_index.mutable_data<int32_t>() + begin);
    std::copy_n(s.section<int32_t>(m, kTopkIdx), rows * k, r.topk_idx.mutable_data<int32_t>() + begin * k);
    std::copy_n(s.section<float>(m, kTopkWeights), rows * k, r.topk_weights.mutable_data<float>() + begin * k);
    if (fp8) std::copy_n(s.section<float>(m, kScales), rows * kb, r.scales.mutable_data<float>() + begin * kb);
    std::memcpy(static_cast<std::byte*>(r.x.mutable_raw_data()) + static_cast<size_t>(begin) * row_bytes,
                s.section<std::byte>(m, kRows), static_cast<size_t>(rows) * row_bytes);
  }
  r.tokens_per_local_expert = detail::tokens_per_local_expert(r.topk_idx, experts_per_rank_);
  return r;
}

PendingNormalCombine Buffer::combine_async(const Tensor& expert_out, const DispatchHandle& handle) {
  trace::Span span("ep_combine_send", "ep");
  const int world = world_size();
  CACHALOT_CHECK_ARG(handle.recv_begin.size() == static_cast<size_t>(world) + 1, "ep combine: the handle is not from this group");
  const int64_t n = handle.recv_begin.back();
  CACHALOT_CHECK_ARG(expert_out.dim() == 2 && expert_out.is_contiguous() && expert_out.size(0) == n &&
                         (expert_out.dtype() == DType::kF32 || expert_out.dtype() == DType::kBF16),
                     "ep combine: expert_out must be contiguous F32 or BF16 [{}, hidden] (one row per received token), got {}",
                     n, expert_out.description());
  const int64_t hidden = expert_out.size(1);
  const size_t row_bytes = static_cast<size_t>(hidden) * expert_out.element_size();
  std::vector<size_t> sizes(static_cast<size_t>(world));
  for (int d = 0; d < world; ++d)
    sizes[d] = MessageLayout{static_cast<size_t>(handle.recv_begin[d + 1] - handle.recv_begin[d]) * row_bytes}.total();
  PendingNormalCombine p;
  p.buffer_ = this;
  p.slot_ = next_slot();
  p.dtype_ = expert_out.dtype();
  p.hidden_ = hidden;
  p.handle_ = handle;
  if (internode()) {
    p.internode_ = true;
    post_internode_combine(p.slot_, expert_out, handle);
    return p;
  }
  const auto* bytes = static_cast<const std::byte*>(expert_out.raw_data());
  detail::send_messages(*transport_, p.slot_, region_bytes(), sizes, [&](int dst, std::span<std::byte> m) {
    const int64_t begin = handle.recv_begin[dst], rows = handle.recv_begin[dst + 1] - begin;
    write_header(m, {MessageStatus::kOk, static_cast<uint32_t>(rows), 0, 0});
    std::memcpy(m.data() + sizeof(MessageHeader), bytes + static_cast<size_t>(begin) * row_bytes,
                static_cast<size_t>(rows) * row_bytes);
  });
  post_regions(p.slot_);
  return p;
}

Tensor PendingNormalCombine::receive() {
  CACHALOT_CHECK_ARG(buffer_ != nullptr, "ep: receive() on a combine that was not posted or was received already");
  trace::Span span("ep_combine_recv", "ep");
  if (internode_) return std::exchange(buffer_, nullptr)->receive_internode_combine(*this);
  Transport& t = std::exchange(buffer_, nullptr)->complete_round(slot_, "combine");
  const int world = t.world_size();
  // Sum in rank order: token t's rows come from the ranks that hold it, in ascending order.
  const int64_t tokens = handle_.num_tokens, hidden = hidden_;
  detail::RowSums sums(tokens, hidden);
  for (int src = 0; src < world; ++src) {
    const std::span<const std::byte> m = t.received(slot_, src);
    const MessageHeader h = read_header(m);
    const Tensor rows = Tensor::view(m.data() + sizeof(MessageHeader), dtype_, {static_cast<int64_t>(h.rows), hidden}, nullptr);
    int64_t i = 0;
    for (int64_t tok = 0; tok < tokens; ++tok) {
      if (!handle_.is_token_in_rank[tok * world + src]) continue;
      CACHALOT_CHECK_ARG(i < h.rows, "ep combine: rank {} returned {} rows, fewer than it received", src, h.rows);
      sums.add(tok, rows, i++, 1.0f);
    }
    CACHALOT_CHECK_ARG(i == h.rows, "ep combine: rank {} returned {} rows for {} tokens", src, h.rows, i);
  }
  return sums.sum();
}

size_t Buffer::normal_slot_bytes(int world, int64_t tokens, int64_t hidden, int64_t k, size_t dispatch_elem,
                                 size_t combine_elem, int nodes) {
  tokens *= std::max(nodes, 1);
  const int64_t kb = dispatch_elem == 1 ? (hidden + 127) / 128 : 0;
  const size_t dispatch = dispatch_sections(tokens, k, kb, static_cast<size_t>(hidden) * dispatch_elem).total();
  const size_t combine = MessageLayout{static_cast<size_t>(tokens * hidden) * combine_elem}.total();
  return std::max(dispatch, combine) * static_cast<size_t>(world);
}

}  // namespace cachalot::ep
