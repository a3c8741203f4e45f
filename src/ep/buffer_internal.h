// Pieces the normal and low-latency halves of ep::Buffer share (not part of the API).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "ep/transport.h"

namespace cachalot::ep::detail {

// topk_idx (I32 or I64 [T, K]) as int32, every id checked to be -1 or a valid expert.
std::vector<int32_t> read_topk(const Tensor& topk_idx, int64_t num_experts, const char* what);
int64_t experts_per_rank(int64_t num_experts, int world, const char* what);
// y += w * rows[row] for an F32 or BF16 [rows, H] tensor.
void add_row(float* y, const Tensor& rows, int64_t row, float w);

// Writes one message per destination into its region (at rank * region): fill(dst, window)
// with sizes[dst] bytes, or, if any message would not fit its region, an overflow header to
// every destination instead, so that every rank fails the operation together.
void send_messages(Transport& t, int slot, size_t region, std::span<const size_t> sizes,
                   const std::function<void(int, std::span<std::byte>)>& fill);

}  // namespace cachalot::ep::detail
