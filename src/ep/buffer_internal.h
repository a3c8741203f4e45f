// Pieces the normal and low-latency halves of ep::Buffer share (not part of the API).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "ep/message.h"
#include "ep/transport.h"

namespace cachalot::ep::detail {

// topk_idx (I32 or I64 [T, K]) as int32, every id checked to be -1 or a valid expert.
std::vector<int32_t> read_topk(const Tensor& topk_idx, int64_t num_experts, const char* what);
int64_t experts_per_rank(int64_t num_experts, int world, const char* what);
// How many received rows chose each local expert (ids in an I32 [rows, K] tensor; -1 skipped).
std::vector<int32_t> tokens_per_local_expert(const Tensor& local_topk_idx, int64_t local_experts);
// A combine's sums: each output row is the weighted sum of some received rows, in the order they
// were added. Rows are collected first and each output row is then written once (weighted_sum),
// instead of reading and writing it again for every source (outputs of thousands of tokens x
// 7168 floats do not stay in cache between sources). Outputs with no rows are zeros.
class RowSums {
 public:
  RowSums(int64_t outputs, int64_t hidden) : outputs_(outputs), hidden_(hidden) {}
  // Adds w * rows[row] (an F32 or BF16 [., hidden] tensor whose memory outlives sum()) to `out`.
  void add(int64_t out, const Tensor& rows, int64_t row, float w);
  Tensor sum() const;  // F32 [outputs, hidden]

 private:
  struct Entry {
    int64_t out;
    const std::byte* row;
    float w;
  };
  int64_t outputs_, hidden_;
  DType dtype_ = DType::kF32;
  std::vector<Entry> entries_;
};

// Writes one message per destination into its region (at rank * region): fill(dst, window)
// with sizes[dst] bytes, or, if any message would not fit its region, an overflow header to
// every destination instead, so that every rank fails the operation together.
void send_messages(Transport& t, int slot, size_t region, std::span<const size_t> sizes,
                   const std::function<void(int, std::span<std::byte>)>& fill);

// Sections of a normal dispatch message (and of an in-place receive layout). kSrcRank is the
// rank the token came from (internode rows reach their receiver through a forwarder).
inline MessageLayout dispatch_sections(int64_t rows, int64_t k, int64_t kb, size_t row_bytes) {
  const size_t r = static_cast<size_t>(rows), rk = r * static_cast<size_t>(k) * 4;
  return MessageLayout{r * 4, rk, rk, r * static_cast<size_t>(kb) * 4, r * row_bytes, r * 4};
}
namespace dispatch_section {
enum : size_t { kSrcIndex, kTopkIdx, kTopkWeights, kScales, kRows, kSrcRank };
}

// RowWriter::write's dst for messages that keep the global expert ids (to a forwarder).
inline constexpr int kGlobalIds = -1;

// Writes source token t's row i of a dispatch message (or of an in-place receive layout): expert
// ids local to dst (-1 for other ranks' experts), or global ones for dst == kGlobalIds.
struct RowWriter {
  const std::vector<int32_t>& topk;
  const Tensor& weights;
  const Tensor& scales;
  const std::byte* x;
  int64_t k, kb, per;
  size_t row_bytes;
  int src_rank;
  void write(std::span<std::byte> m, const MessageLayout& s, int dst, int64_t t, int64_t i) const {
    using namespace dispatch_section;
    s.section<int32_t>(m, kSrcIndex)[i] = static_cast<int32_t>(t);
    s.section<int32_t>(m, kSrcRank)[i] = src_rank;
    int32_t* idx = s.section<int32_t>(m, kTopkIdx) + i * k;
    float* w = s.section<float>(m, kTopkWeights) + i * k;
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = topk[t * k + j];
      idx[j] = dst == kGlobalIds ? e : e >= 0 && e / per == dst ? static_cast<int32_t>(e % per) : -1;
      w[j] = weights.data<float>()[t * k + j];
    }
    if (kb > 0) std::copy_n(scales.data<float>() + t * kb, kb, s.section<float>(m, kScales) + i * kb);
    std::memcpy(s.section<std::byte>(m, kRows) + static_cast<size_t>(i) * row_bytes, x + static_cast<size_t>(t) * row_bytes,
                row_bytes);
  }
};

}  // namespace cachalot::ep::detail
