// Weights in the layout the GEMM kernels stream: prepared once at load, never per call.
//
// B [N, K] (or [G, N, K] for MoE experts) is cut into panels of 16 output rows (n) and, within a
// panel, into blocks of 128 k. One block holds, for each pair of k (j = 0..63) and each of the
// panel's 16 rows, the two values B[n][2j], B[n][2j+1] side by side:
//     block[(j * 16 + lane) * 2 + e] = B[panel * 16 + lane][kb * 128 + 2 * j + e]
// so one 512-bit register of BF16 holds 16 rows' k-pairs, the operand of vdpbf16ps. FP8 blocks
// are 2 KiB, BF16 blocks 4 KiB. Panels come in chunks of 4 (64 columns, one kernel tile wide),
// and a chunk's blocks are interleaved by k-block: [chunk][kb][panel in chunk][block], so a
// kernel working on one chunk reads one sequential stream (what the hardware prefetcher
// follows best when the weights come from DRAM). Rows past N and k past K are zero. FP8 weights
// keep their 128x128 block scales (weight_scale_inv); a 16-row panel lies inside one scale block.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>

#include "core/tensor.h"

namespace cachalot::gemm {

inline constexpr int64_t kPanelRows = 16;
inline constexpr int64_t kPanelsPerChunk = 4;
inline constexpr int64_t kPairsPerBlock = 64;  // 128 k as 64 pairs

class PackedWeights {
 public:
  enum class Format { kFp8, kBf16 };

  Format format() const { return format_; }
  int64_t groups() const { return groups_; }
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  int64_t panels() const { return panels_; }
  int64_t kblocks() const { return kblocks_; }
  int64_t block_bytes() const { return format_ == Format::kFp8 ? 2048 : 4096; }
  // Panels in the chunk holding panel p (4, or fewer in the last chunk).
  int64_t chunk_panels(int64_t p) const {
    const int64_t first = p / kPanelsPerChunk * kPanelsPerChunk;
    return std::min(kPanelsPerChunk, panels_ - first);
  }
  // First block (kb = 0) of panel p of group g; panel_stride(p) bytes lead to its next k-block.
  const uint8_t* panel(int64_t g, int64_t p) const {
    const int64_t first = p / kPanelsPerChunk * kPanelsPerChunk;
    return data_.data<uint8_t>() +
           ((g * panels_ + first) * kblocks_ + (p - first)) * block_bytes();
  }
  int64_t panel_stride(int64_t p) const { return chunk_panels(p) * block_bytes(); }
  // Scales of the 128-row block holding panel p of group g: kblocks() floats; null for BF16.
  const float* panel_scales(int64_t g, int64_t p) const {
    if (format_ != Format::kFp8) return nullptr;
    return scales_.data<float>() + (g * ((n_ + 127) / 128) + p * kPanelRows / 128) * kblocks_;
  }
  size_t bytes() const { return data_.nbytes() + (scales_.defined() ? scales_.nbytes() : 0); }

  // Output rows [n0, n1) of a one-group packing, as a view sharing its storage (a projection
  // split by heads, e.g. MLA's kv_b run for a few heads at a time). n0 must be a multiple of 128
  // (whole scale blocks and chunks), n1 a multiple of 64 or n().
  PackedWeights rows(int64_t n0, int64_t n1) const;

  friend PackedWeights pack_fp8_weights(const Tensor& b, const Tensor& scales);
  friend PackedWeights pack_fp8_weights(std::span<const Tensor> b, std::span<const Tensor> scales);
  friend PackedWeights pack_bf16_weights(const Tensor& b);

 private:
  Format format_ = Format::kFp8;
  int64_t groups_ = 0, n_ = 0, k_ = 0, panels_ = 0, kblocks_ = 0;
  Tensor data_;    // U8 [groups, panels, kblocks, block_bytes]
  Tensor scales_;  // F32 [groups, ceil(N/128), kblocks] (FP8 only)
};

// b: F8_E4M3 [N, K] with scales F32 [ceil(N/128), ceil(K/128)], or [G, N, K] with [G, ., .].
PackedWeights pack_fp8_weights(const Tensor& b, const Tensor& scales);
// The same from G separate [N, K] tensors and their [ceil(N/128), ceil(K/128)] scales (MoE
// experts are separate tensors in a checkpoint; this packs them without concatenating first).
PackedWeights pack_fp8_weights(std::span<const Tensor> b, std::span<const Tensor> scales);
// b: BF16 [N, K] or [G, N, K].
PackedWeights pack_bf16_weights(const Tensor& b);

}  // namespace cachalot::gemm
