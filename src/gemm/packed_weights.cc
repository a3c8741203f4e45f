#include "gemm/packed_weights.h"

#include <cstring>

#include "core/error.h"
#include "core/thread_pool.h"
#include "gemm/quantize.h"

namespace cachalot::gemm {
namespace {

// Views b as [G, N, K] (G = 1 for 2-D), checking dtype and that rows are contiguous.
Tensor as_grouped(const Tensor& b, DType dtype, const char* what) {
  CACHALOT_CHECK_ARG(b.dtype() == dtype, "{}: weights must be {}, got {}", what, dtype_name(dtype), b.description());
  CACHALOT_CHECK_ARG(b.dim() == 2 || b.dim() == 3, "{}: weights must be [N, K] or [G, N, K], got {}", what,
                     b.description());
  CACHALOT_CHECK_ARG(b.is_contiguous(), "{}: weights must be contiguous, got {}", what, b.description());
  return b.dim() == 3 ? b : b.reshape({1, b.size(0), b.size(1)});
}

// group_rows(g) points at group g's [N, K] rows (contiguous).
template <typename Element, typename GroupRows>
void pack(GroupRows group_rows, const PackedWeights& w, uint8_t* out) {
  const int64_t groups = w.groups(), n = w.n(), k = w.k(), panels = w.panels();
  ThreadPool::global().parallel_for(0, groups * panels, [&](int64_t p0, int64_t p1, int) {
    for (int64_t gp = p0; gp < p1; ++gp) {
      const int64_t g = gp / panels, p = gp % panels;
      // Same arithmetic as PackedWeights::panel(), on the writable buffer.
      auto* first = reinterpret_cast<Element*>(out + (w.panel(g, p) - w.panel(0, 0)));
      const int64_t stride = w.panel_stride(p) / static_cast<int64_t>(sizeof(Element));
      // Zero the panel's blocks here, in parallel (padding rows and k stay zero): on a fresh
      // buffer this is also where its pages are first touched.
      for (int64_t kb = 0; kb < w.kblocks(); ++kb)
        std::memset(first + kb * stride, 0, static_cast<size_t>(w.block_bytes()));
      for (int64_t lane = 0; lane < kPanelRows; ++lane) {
        const int64_t row = p * kPanelRows + lane;
        if (row >= n) break;
        const Element* src_row = static_cast<const Element*>(static_cast<const void*>(group_rows(g))) + row * k;
        for (int64_t c = 0; c < k; ++c) {
          const int64_t kb = c / 128, j = (c % 128) / 2, e = c % 2;
          first[kb * stride + (j * kPanelRows + lane) * 2 + e] = src_row[c];
        }
      }
    }
  });
}

}  // namespace

PackedWeights pack_fp8_weights(const Tensor& b, const Tensor& scales) {
  const Tensor b3 = as_grouped(b, DType::kF8E4M3, "pack_fp8_weights");
  const int64_t groups = b3.size(0), n = b3.size(1), k = b3.size(2);
  const Dims want = b.dim() == 3 ? Dims{groups, ceil_div(n, kBlock), ceil_div(k, kBlock)}
                                 : Dims{ceil_div(n, kBlock), ceil_div(k, kBlock)};
  CACHALOT_CHECK_ARG(scales.dtype() == DType::kF32 && scales.shape() == want && scales.is_contiguous(),
                     "pack_fp8_weights: scales must be contiguous F32 {} for weights {}, got {}",
                     want.to_string(), b.description(), scales.description());
  PackedWeights w;
  w.format_ = PackedWeights::Format::kFp8;
  w.groups_ = groups, w.n_ = n, w.k_ = k;
  w.panels_ = ceil_div(n, kPanelRows), w.kblocks_ = ceil_div(k, kBlock);
  w.data_ = Tensor::empty(DType::kU8, {groups, w.panels_, w.kblocks_, w.block_bytes()});
  pack<uint8_t>([&](int64_t g) { return b3.data<fp8_e4m3>() + g * n * k; }, w, w.data_.mutable_data<uint8_t>());
  w.scales_ = scales.reshape({groups, ceil_div(n, kBlock), w.kblocks_}).clone();
  return w;
}

PackedWeights pack_fp8_weights(std::span<const Tensor> b, std::span<const Tensor> scales) {
  CACHALOT_CHECK_ARG(!b.empty() && b.size() == scales.size(),
                     "pack_fp8_weights: need one scales tensor per group ({} weights, {} scales)", b.size(),
                     scales.size());
  const int64_t groups = static_cast<int64_t>(b.size()), n = b[0].size(0), k = b[0].size(-1);
  for (size_t g = 0; g < b.size(); ++g) {
    CACHALOT_CHECK_ARG(b[g].dtype() == DType::kF8E4M3 && b[g].shape() == (Dims{n, k}) && b[g].is_contiguous(),
                       "pack_fp8_weights: group {} must be contiguous F8_E4M3 [{}, {}], got {}", g, n, k,
                       b[g].description());
    CACHALOT_CHECK_ARG(scales[g].dtype() == DType::kF32 &&
                           scales[g].shape() == (Dims{ceil_div(n, kBlock), ceil_div(k, kBlock)}) &&
                           scales[g].is_contiguous(),
                       "pack_fp8_weights: group {} scales must be contiguous F32 [{}, {}], got {}", g,
                       ceil_div(n, kBlock), ceil_div(k, kBlock), scales[g].description());
  }
  PackedWeights w;
  w.format_ = PackedWeights::Format::kFp8;
  w.groups_ = groups, w.n_ = n, w.k_ = k;
  w.panels_ = ceil_div(n, kPanelRows), w.kblocks_ = ceil_div(k, kBlock);
  w.data_ = Tensor::empty(DType::kU8, {groups, w.panels_, w.kblocks_, w.block_bytes()});
  pack<uint8_t>([&](int64_t g) { return b[static_cast<size_t>(g)].raw_data(); }, w, w.data_.mutable_data<uint8_t>());
  const int64_t per_group = ceil_div(n, kBlock) * w.kblocks_;
  w.scales_ = Tensor::empty(DType::kF32, {groups, ceil_div(n, kBlock), w.kblocks_});
  for (int64_t g = 0; g < groups; ++g)
    std::memcpy(w.scales_.mutable_data<float>() + g * per_group, scales[static_cast<size_t>(g)].data<float>(),
                static_cast<size_t>(per_group) * sizeof(float));
  return w;
}

PackedWeights pack_bf16_weights(const Tensor& b) {
  const Tensor b3 = as_grouped(b, DType::kBF16, "pack_bf16_weights");
  PackedWeights w;
  w.format_ = PackedWeights::Format::kBf16;
  w.groups_ = b3.size(0), w.n_ = b3.size(1), w.k_ = b3.size(2);
  w.panels_ = ceil_div(w.n_, kPanelRows), w.kblocks_ = ceil_div(w.k_, kBlock);
  w.data_ = Tensor::empty(DType::kU8, {w.groups_, w.panels_, w.kblocks_, w.block_bytes()});
  const int64_t group_elems = w.n_ * w.k_;
  pack<uint16_t>([&](int64_t g) { return b3.data<bf16>() + g * group_elems; }, w, w.data_.mutable_data<uint8_t>());
  return w;
}

PackedWeights PackedWeights::rows(int64_t n0, int64_t n1) const {
  CACHALOT_CHECK_ARG(groups_ == 1, "PackedWeights::rows: needs one group, the packing has {}", groups_);
  CACHALOT_CHECK_ARG(0 <= n0 && n0 < n1 && n1 <= n_, "PackedWeights::rows: [{}, {}) is not a range inside [0, {})", n0,
                     n1, n_);
  CACHALOT_CHECK_ARG(n0 % kBlock == 0 && (n1 % (kPanelRows * kPanelsPerChunk) == 0 || n1 == n_),
                     "PackedWeights::rows: [{}, {}) must start at a multiple of {} and end at a multiple of {} or at {}",
                     n0, n1, kBlock, kPanelRows * kPanelsPerChunk, n_);
  PackedWeights w = *this;
  w.n_ = n1 - n0;
  w.panels_ = ceil_div(w.n_, kPanelRows);
  w.data_ = data_.slice(1, n0 / kPanelRows, n0 / kPanelRows + w.panels_);
  if (format_ == Format::kFp8) w.scales_ = scales_.slice(1, n0 / kBlock, ceil_div(n1, kBlock));
  return w;
}

}  // namespace cachalot::gemm
