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

template <typename Element>
void pack(const Tensor& b3, const PackedWeights& w, uint8_t* out) {
  const int64_t groups = w.groups(), n = w.n(), k = w.k(), panels = w.panels();
  const auto* src = static_cast<const Element*>(b3.raw_data());
  std::memset(out, 0, static_cast<size_t>(groups * panels * w.kblocks() * w.block_bytes()));
  ThreadPool::global().parallel_for(0, groups * panels, [&](int64_t p0, int64_t p1, int) {
    for (int64_t gp = p0; gp < p1; ++gp) {
      const int64_t g = gp / panels, p = gp % panels;
      // Same arithmetic as PackedWeights::panel(), on the writable buffer.
      auto* first = reinterpret_cast<Element*>(out + (w.panel(g, p) - w.panel(0, 0)));
      const int64_t stride = w.panel_stride(p) / static_cast<int64_t>(sizeof(Element));
      for (int64_t lane = 0; lane < kPanelRows; ++lane) {
        const int64_t row = p * kPanelRows + lane;
        if (row >= n) break;
        const Element* src_row = src + (g * n + row) * k;
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
  pack<uint8_t>(b3, w, w.data_.mutable_data<uint8_t>());
  w.scales_ = scales.reshape({groups, ceil_div(n, kBlock), w.kblocks_}).clone();
  return w;
}

PackedWeights pack_bf16_weights(const Tensor& b) {
  const Tensor b3 = as_grouped(b, DType::kBF16, "pack_bf16_weights");
  PackedWeights w;
  w.format_ = PackedWeights::Format::kBf16;
  w.groups_ = b3.size(0), w.n_ = b3.size(1), w.k_ = b3.size(2);
  w.panels_ = ceil_div(w.n_, kPanelRows), w.kblocks_ = ceil_div(w.k_, kBlock);
  w.data_ = Tensor::empty(DType::kU8, {w.groups_, w.panels_, w.kblocks_, w.block_bytes()});
  pack<uint16_t>(b3, w, w.data_.mutable_data<uint8_t>());
  return w;
}

}  // namespace cachalot::gemm
