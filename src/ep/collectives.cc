#include "ep/collectives.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/error.h"

namespace cachalot::ep {
namespace {

// Every rank's message size (the control slot's all-gather).
std::vector<uint64_t> all_sizes(Transport& t, size_t mine) {
  const uint64_t size = mine;
  std::vector<uint64_t> all(static_cast<size_t>(t.world_size()));
  t.all_gather(std::as_bytes(std::span(&size, 1)), std::as_writable_bytes(std::span(all)));
  return all;
}

// Rounds of at most `piece` bytes per message: messages_of(round)[dst] is what this rank sends
// to dst in that round; received pieces are appended to out[src].
template <typename Messages>
void exchange_in_rounds(Buffer& buffer, uint64_t largest, const Messages& messages_of,
                        std::vector<std::vector<std::byte>>& out) {
  const size_t piece = buffer.max_message_bytes();
  CACHALOT_CHECK_ARG(piece > 0, "ep collective: the transport's slot_bytes ({}) leave no room for a message",
                     buffer.transport().options().slot_bytes);
  const uint64_t rounds = (largest + piece - 1) / piece;
  for (uint64_t round = 0; round < rounds; ++round) {
    const std::vector<std::span<const std::byte>> to = messages_of(round * piece, piece);
    const std::vector<std::span<const std::byte>> got = buffer.exchange(to);
    for (size_t src = 0; src < got.size(); ++src) out[src].insert(out[src].end(), got[src].begin(), got[src].end());
  }
}

// bytes[from, from + piece) of `data`, clipped.
std::span<const std::byte> piece_of(std::span<const std::byte> data, uint64_t from, size_t piece) {
  if (from >= data.size()) return {};
  return data.subspan(from, std::min<size_t>(piece, data.size() - from));
}

}  // namespace

std::vector<std::byte> broadcast_bytes(Buffer& buffer, int root, std::span<const std::byte> data) {
  Transport& t = buffer.transport();
  CACHALOT_CHECK_ARG(root >= 0 && root < t.world_size(), "ep broadcast: root {} outside 0..{}", root, t.world_size() - 1);
  const bool is_root = t.rank() == root;
  const uint64_t size = all_sizes(t, is_root ? data.size() : 0)[root];
  const size_t world = static_cast<size_t>(t.world_size());
  std::vector<std::vector<std::byte>> got(world);
  exchange_in_rounds(buffer, size, [&](uint64_t from, size_t piece) {
    std::vector<std::span<const std::byte>> to(world);
    if (is_root)
      for (size_t dst = 0; dst < world; ++dst)
        if (static_cast<int>(dst) != root) to[dst] = piece_of(data, from, piece);
    return to;
  }, got);
  if (is_root) return {data.begin(), data.end()};
  CACHALOT_ASSERT(got[root].size() == size);
  return std::move(got[root]);
}

std::vector<std::vector<std::byte>> gather_bytes(Buffer& buffer, int root, std::span<const std::byte> mine) {
  Transport& t = buffer.transport();
  CACHALOT_CHECK_ARG(root >= 0 && root < t.world_size(), "ep gather: root {} outside 0..{}", root, t.world_size() - 1);
  const bool is_root = t.rank() == root;
  const std::vector<uint64_t> sizes = all_sizes(t, is_root ? 0 : mine.size());
  const size_t world = static_cast<size_t>(t.world_size());
  std::vector<std::vector<std::byte>> got(world);
  exchange_in_rounds(buffer, *std::max_element(sizes.begin(), sizes.end()), [&](uint64_t from, size_t piece) {
    std::vector<std::span<const std::byte>> to(world);
    if (!is_root) to[root] = piece_of(mine, from, piece);
    return to;
  }, got);
  if (!is_root) return {};
  got[root].assign(mine.begin(), mine.end());
  for (size_t src = 0; src < world; ++src) CACHALOT_ASSERT(got[src].size() == (static_cast<int>(src) == root ? mine.size() : sizes[src]));
  return got;
}

}  // namespace cachalot::ep
