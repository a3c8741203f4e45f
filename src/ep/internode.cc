// ep::Buffer's internode normal mode: ranks on several nodes of several ranks each (DeepEP's
// internode kernels; here the mpi transport across hosts). A token crosses to each node that
// holds one of its experts once, not once per rank there:
//
//   dispatch  hop 1: source (node a, local i) -> (node b, local i), the forwarder, for every node
//                    b holding an expert of the token (global expert ids);
//             hop 2: the forwarder -> each rank of its node holding one of the token's experts.
//   combine   hop 1: each rank -> the forwarder that brought it each row;
//             hop 2: the forwarder sums its node's rows per token (rank order) and sends one row
//                    back to the source, which sums the nodes' rows (node order).
//
// Both hops use the operation's slot, one round after the other; what a rank received in hop 1
// is copied out (dispatch) or reduced (combine) before hop 2 reuses the slot. Received rows are
// grouped by source rank then token, as in single-node mode, and the handle remembers what each
// forwarder sent where. Combine rounds each node's partial sum to BF16 for the second hop when
// the expert outputs are BF16 (DeepEP's internode combine sends BF16).
#include <algorithm>
#include <cstring>
#include <utility>

#include "core/convert.h"
#include "core/error.h"
#include "core/trace.h"
#include "ep/buffer.h"
#include "ep/buffer_internal.h"
#include "ep/message.h"

namespace cachalot::ep {

using detail::dispatch_sections;
using namespace detail::dispatch_section;

bool Buffer::internode() const { return transport_->num_nodes() > 1 && transport_->ranks_per_node() > 1; }

void Buffer::post_internode_dispatch(int slot, const detail::RowWriter& writer, const DispatchLayout& layout) {
  Transport& t = *transport_;
  const int world = t.world_size(), per_node = t.ranks_per_node(), local = t.rank() % per_node;
  // Hop 1: to rank `local` of every node, the tokens with an expert there, ascending.
  std::vector<size_t> sizes(static_cast<size_t>(world), sizeof(MessageHeader));
  for (int n = 0; n < t.num_nodes(); ++n)
    sizes[n * per_node + local] = dispatch_sections(layout.tokens_per_node[n], writer.k, writer.kb, writer.row_bytes).total();
  detail::send_messages(t, slot, region_bytes(), sizes, [&](int dst, std::span<std::byte> m) {
    const int node = dst / per_node;
    const int64_t rows = dst % per_node == local ? layout.tokens_per_node[node] : 0;
    write_header(m, {MessageStatus::kOk, static_cast<uint32_t>(rows), 0, 0});
    if (rows == 0) return;
    const MessageLayout s = dispatch_sections(rows, writer.k, writer.kb, writer.row_bytes);
    int64_t i = 0;
    for (int64_t tok = 0; tok < layout.num_tokens; ++tok) {
      const uint8_t* in = layout.is_token_in_rank.data() + tok * world + node * per_node;
      if (std::any_of(in, in + per_node, [](uint8_t v) { return v != 0; })) writer.write(m, s, detail::kGlobalIds, tok, i++);
    }
    CACHALOT_ASSERT(i == rows);
  });
  post_regions(slot);
}

DispatchResult Buffer::receive_internode_dispatch(PendingNormalDispatch& p) {
  Transport& t = complete_round(p.slot_, "dispatch (between nodes)");
  const int world = t.world_size(), per_node = t.ranks_per_node(), nodes = t.num_nodes();
  const int node = t.node(), local = t.rank() % per_node, first = node * per_node;
  const bool fp8 = p.dtype_ == DType::kF8E4M3;
  const int64_t k = p.k_, kb = fp8 ? (p.hidden_ + 127) / 128 : 0, per = p.experts_per_rank_;
  const size_t row_bytes = static_cast<size_t>(p.hidden_) * dtype_size(p.dtype_);

  // What hop 1 brought (from rank `local` of each node), copied out: hop 2 reuses the slot.
  DispatchHandle& h = p.handle_;
  h.forward_begin.assign(static_cast<size_t>(nodes) + 1, 0);
  std::vector<std::vector<std::byte>> from(static_cast<size_t>(nodes));
  for (int n = 0; n < nodes; ++n) {
    const std::span<const std::byte> m = t.received(p.slot_, n * per_node + local);
    const int64_t rows = read_header(m).rows;
    h.forward_begin[n + 1] = h.forward_begin[n] + rows;
    from[n].assign(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(dispatch_sections(rows, k, kb, row_bytes).total()));
  }
  // Which ranks of this node each row goes on to.
  const int64_t forwarded = h.forward_begin.back();
  h.forwarded_to.assign(static_cast<size_t>(forwarded * per_node), 0);
  std::vector<int64_t> count(static_cast<size_t>(per_node), 0);
  for (int n = 0; n < nodes; ++n) {
    const int64_t rows = h.forward_begin[n + 1] - h.forward_begin[n];
    const MessageLayout s = dispatch_sections(rows, k, kb, row_bytes);
    const std::span<const std::byte> m(from[n]);
    for (int64_t i = 0; i < rows; ++i) {
      uint8_t* to = h.forwarded_to.data() + (h.forward_begin[n] + i) * per_node;
      for (int64_t j = 0; j < k; ++j)
        if (const int32_t e = s.section<int32_t>(m, kTopkIdx)[i * k + j]; e >= 0 && e / per / per_node == node)
          to[e / per % per_node] = 1;
      for (int r = 0; r < per_node; ++r) count[r] += to[r];
    }
  }
  // Hop 2: to each rank of this node, its rows, by source node then token (so by source rank).
  std::vector<size_t> sizes(static_cast<size_t>(world), sizeof(MessageHeader));
  for (int r = 0; r < per_node; ++r) sizes[first + r] = dispatch_sections(count[r], k, kb, row_bytes).total();
  detail::send_messages(t, p.slot_, region_bytes(), sizes, [&](int dst, std::span<std::byte> out) {
    const int r = dst - first;
    const int64_t rows = r >= 0 && r < per_node ? count[r] : 0;
    write_header(out, {MessageStatus::kOk, static_cast<uint32_t>(rows), 0, 0});
    if (rows == 0) return;
    const MessageLayout d = dispatch_sections(rows, k, kb, row_bytes);
    int64_t o = 0;
    for (int n = 0; n < nodes; ++n) {
      const int64_t in_rows = h.forward_begin[n + 1] - h.forward_begin[n];
      const MessageLayout s = dispatch_sections(in_rows, k, kb, row_bytes);
      const std::span<const std::byte> m(from[n]);
      for (int64_t i = 0; i < in_rows; ++i) {
        if (!h.forwarded_to[(h.forward_begin[n] + i) * per_node + r]) continue;
        d.section<int32_t>(out, kSrcIndex)[o] = s.section<int32_t>(m, kSrcIndex)[i];
        d.section<int32_t>(out, kSrcRank)[o] = s.section<int32_t>(m, kSrcRank)[i];
        for (int64_t j = 0; j < k; ++j) {
          const int32_t e = s.section<int32_t>(m, kTopkIdx)[i * k + j];
          d.section<int32_t>(out, kTopkIdx)[o * k + j] = e >= 0 && e / per == dst ? static_cast<int32_t>(e % per) : -1;
          d.section<float>(out, kTopkWeights)[o * k + j] = s.section<float>(m, kTopkWeights)[i * k + j];
        }
        std::copy_n(s.section<float>(m, kScales) + i * kb, kb, d.section<float>(out, kScales) + o * kb);
        std::memcpy(d.section<std::byte>(out, kRows) + static_cast<size_t>(o) * row_bytes,
                    s.section<std::byte>(m, kRows) + static_cast<size_t>(i) * row_bytes, row_bytes);
        ++o;
      }
    }
    CACHALOT_ASSERT(o == rows);
  });
  post_regions(p.slot_);
  complete_round(p.slot_, "dispatch (within the node)");

  // Lay out by source rank: source (n, i)'s rows are one run in forwarder i's message, which
  // holds the runs of sources (0, i), (1, i), ... in node order.
  DispatchResult r;
  r.handle = std::move(h);
  r.handle.recv_begin.assign(static_cast<size_t>(world) + 1, 0);
  std::vector<int64_t> run_start(static_cast<size_t>(world), 0);
  for (int f = 0; f < per_node; ++f) {
    const std::span<const std::byte> m = t.received(p.slot_, first + f);
    const int64_t rows = read_header(m).rows;
    const MessageLayout s = dispatch_sections(rows, k, kb, row_bytes);
    for (int64_t i = 0; i < rows; ++i) {
      const int32_t src = s.section<int32_t>(m, kSrcRank)[i];
      if (!(src >= 0 && src < world && src % per_node == f)) raise(ErrorKind::kInternal,
                     "ep dispatch: forwarder {} passed on a row of rank {}", first + f, src);
      ++r.handle.recv_begin[src + 1];
    }
  }
  for (int src = 0; src < world; ++src) r.handle.recv_begin[src + 1] += r.handle.recv_begin[src];
  const int64_t n = r.handle.recv_begin.back();
  r.x = Tensor::empty(p.dtype_, {n, p.hidden_});
  r.scales = fp8 ? Tensor::empty(DType::kF32, {n, kb}) : Tensor();
  r.topk_idx = Tensor::empty(DType::kI32, {n, k});
  r.topk_weights = Tensor::empty(DType::kF32, {n, k});
  r.src_index = Tensor::empty(DType::kI32, {n});
  for (int f = 0; f < per_node; ++f) {
    const std::span<const std::byte> m = t.received(p.slot_, first + f);
    const int64_t rows = read_header(m).rows;
    const MessageLayout s = dispatch_sections(rows, k, kb, row_bytes);
    for (int64_t i = 0; i < rows;) {
      const int32_t src = s.section<int32_t>(m, kSrcRank)[i];
      int64_t end = i;
      while (end < rows && s.section<int32_t>(m, kSrcRank)[end] == src) ++end;
      const int64_t at = r.handle.recv_begin[src], len = end - i;
      std::copy_n(s.section<int32_t>(m, kSrcIndex) + i, len, r.src_index.mutable_data<int32_t>() + at);
      std::copy_n(s.section<int32_t>(m, kTopkIdx) + i * k, len * k, r.topk_idx.mutable_data<int32_t>() + at * k);
      std::copy_n(s.section<float>(m, kTopkWeights) + i * k, len * k, r.topk_weights.mutable_data<float>() + at * k);
      if (fp8) std::copy_n(s.section<float>(m, kScales) + i * kb, len * kb, r.scales.mutable_data<float>() + at * kb);
      std::memcpy(static_cast<std::byte*>(r.x.mutable_raw_data()) + static_cast<size_t>(at) * row_bytes,
                  s.section<std::byte>(m, kRows) + static_cast<size_t>(i) * row_bytes, static_cast<size_t>(len) * row_bytes);
      i = end;
    }
  }
  r.tokens_per_local_expert = detail::tokens_per_local_expert(r.topk_idx, per);
  return r;
}

void Buffer::post_internode_combine(int slot, const Tensor& expert_out, const DispatchHandle& handle) {
  Transport& t = *transport_;
  const int world = t.world_size(), per_node = t.ranks_per_node(), first = t.node() * per_node;
  const size_t row_bytes = static_cast<size_t>(expert_out.size(1)) * expert_out.element_size();
  // Hop 1: each row back to the forwarder that brought it (rank src % per_node of this node),
  // in the order it sent them (source rank, then token).
  auto rows_for = [&](int f) {
    int64_t rows = 0;
    for (int src = f; src < world; src += per_node) rows += handle.recv_begin[src + 1] - handle.recv_begin[src];
    return rows;
  };
  std::vector<size_t> sizes(static_cast<size_t>(world), sizeof(MessageHeader));
  for (int f = 0; f < per_node; ++f) sizes[first + f] = MessageLayout{static_cast<size_t>(rows_for(f)) * row_bytes}.total();
  const auto* bytes = static_cast<const std::byte*>(expert_out.raw_data());
  detail::send_messages(t, slot, region_bytes(), sizes, [&](int dst, std::span<std::byte> m) {
    const int f = dst - first;
    const int64_t rows = f >= 0 && f < per_node ? rows_for(f) : 0;
    write_header(m, {MessageStatus::kOk, static_cast<uint32_t>(rows), 0, 0});
    std::byte* out = m.data() + sizeof(MessageHeader);
    for (int src = f; rows > 0 && src < world; src += per_node) {
      const int64_t begin = handle.recv_begin[src], n = handle.recv_begin[src + 1] - begin;
      std::memcpy(out, bytes + static_cast<size_t>(begin) * row_bytes, static_cast<size_t>(n) * row_bytes);
      out += static_cast<size_t>(n) * row_bytes;
    }
  });
  post_regions(slot);
}

Tensor Buffer::receive_internode_combine(PendingNormalCombine& p) {
  Transport& t = complete_round(p.slot_, "combine (within the node)");
  const int world = t.world_size(), per_node = t.ranks_per_node(), nodes = t.num_nodes();
  const int first = t.node() * per_node, local = t.rank() % per_node;
  const int64_t hidden = p.hidden_;
  const DispatchHandle& h = p.handle_;
  // As forwarder: each forwarded row's sum over the ranks of this node it went to, in rank order.
  const int64_t forwarded = h.forward_begin.back();
  detail::RowSums partial_sums(forwarded, hidden);
  std::vector<Tensor> from(static_cast<size_t>(per_node));
  std::vector<int64_t> next(static_cast<size_t>(per_node), 0);
  for (int r = 0; r < per_node; ++r) {
    const std::span<const std::byte> m = t.received(p.slot_, first + r);
    from[r] = Tensor::view(m.data() + sizeof(MessageHeader), p.dtype_, {static_cast<int64_t>(read_header(m).rows), hidden}, nullptr);
  }
  for (int64_t j = 0; j < forwarded; ++j)
    for (int r = 0; r < per_node; ++r) {
      if (!h.forwarded_to[j * per_node + r]) continue;
      if (!(next[r] < from[r].size(0))) raise(ErrorKind::kInternal, "ep combine: rank {} returned too few rows", first + r);
      partial_sums.add(j, from[r], next[r]++, 1.0f);
    }
  for (int r = 0; r < per_node; ++r)
    if (!(next[r] == from[r].size(0))) raise(ErrorKind::kInternal, "ep combine: rank {} returned {} rows for {}", first + r,
                   from[r].size(0), next[r]);
  const Tensor partial = partial_sums.sum();
  // Hop 2: one row per token back to its source (rank `local` of each node), in the dtype the
  // experts returned.
  Tensor back = partial;
  if (p.dtype_ == DType::kBF16) {
    back = Tensor::empty(DType::kBF16, {forwarded, hidden});
    convert(partial.data<float>(), back.mutable_data<bf16>(), static_cast<size_t>(partial.numel()));
  }
  const size_t row_bytes = static_cast<size_t>(hidden) * back.element_size();
  std::vector<size_t> sizes(static_cast<size_t>(world), sizeof(MessageHeader));
  for (int n = 0; n < nodes; ++n)
    sizes[n * per_node + local] = MessageLayout{static_cast<size_t>(h.forward_begin[n + 1] - h.forward_begin[n]) * row_bytes}.total();
  detail::send_messages(t, p.slot_, region_bytes(), sizes, [&](int dst, std::span<std::byte> m) {
    const int n = dst / per_node;
    const int64_t rows = dst % per_node == local ? h.forward_begin[n + 1] - h.forward_begin[n] : 0;
    write_header(m, {MessageStatus::kOk, static_cast<uint32_t>(rows), 0, 0});
    if (rows > 0)
      std::memcpy(m.data() + sizeof(MessageHeader),
                  static_cast<const std::byte*>(back.raw_data()) + static_cast<size_t>(h.forward_begin[n]) * row_bytes,
                  static_cast<size_t>(rows) * row_bytes);
  });
  post_regions(p.slot_);
  complete_round(p.slot_, "combine (between nodes)");
  // As source: each token's rows from the nodes holding its experts, summed in node order.
  detail::RowSums sums(h.num_tokens, hidden);
  for (int n = 0; n < nodes; ++n) {
    const std::span<const std::byte> m = t.received(p.slot_, n * per_node + local);
    const int64_t rows = read_header(m).rows;
    const Tensor part = Tensor::view(m.data() + sizeof(MessageHeader), back.dtype(), {rows, hidden}, nullptr);
    int64_t i = 0;
    for (int64_t tok = 0; tok < h.num_tokens; ++tok) {
      const uint8_t* in = h.is_token_in_rank.data() + tok * world + n * per_node;
      if (std::none_of(in, in + per_node, [](uint8_t v) { return v != 0; })) continue;
      if (!(i < rows)) raise(ErrorKind::kInternal, "ep combine: node {} returned {} rows, too few", n, rows);
      sums.add(tok, part, i++, 1.0f);
    }
    if (!(i == rows)) raise(ErrorKind::kInternal, "ep combine: node {} returned {} rows for {} tokens", n, rows, i);
  }
  return sums.sum();
}

}  // namespace cachalot::ep
