// FP8 block-scaled GEMMs (our DeepGEMM) and the BF16 GEMM, CPU backends.
//
//   gemm_fp8_nt:                 D[M,N] = C + (A[M,K] x B[N,K]^T), A FP8 with scales [M, K/128],
//                                B packed FP8 with 128x128 block scales
//   gemm_fp8_grouped_contiguous: MoE prefill layout: A's rows tagged by expert (m_indices[M],
//                                -1 = padding row), expert g's rows use B[g]
//   gemm_fp8_grouped_masked:     MoE decode layout: A [G, M_max, K], only the first masked_m[g]
//                                rows of group g are computed
//   gemm_bf16_nt:                D = C + A x B^T with BF16 A and packed BF16 B
//   gemm_bf16_grouped_masked:    the masked layout with BF16 A and B
//
// Numerics: each 128-deep slice of K is accumulated in FP32 (vdpbf16ps order, see
// tile_kernel.h), multiplied by scale_a[row][kb] * scale_b[block][kb] and added into an FP32
// accumulator; D gets the accumulator (+ C, FP32) rounded to D's dtype (FP32 or BF16, nearest
// even). K and N need not be multiples of 128. Rows that are not computed (m_indices -1, rows
// past masked_m) are left untouched in D, as DeepGEMM does. d may alias c.
//
// Weights are packed once (packed_weights.h); the overloads taking raw B pack on every call
// and are meant for tests and one-off use.
#pragma once

#include "core/tensor.h"
#include "gemm/packed_weights.h"

namespace cachalot::gemm {

void gemm_fp8_nt(const Tensor& a, const Tensor& sa, const PackedWeights& b, Tensor& d, const Tensor* c = nullptr);
void gemm_fp8_nt(const Tensor& a, const Tensor& sa, const Tensor& b, const Tensor& sb, Tensor& d,
                 const Tensor* c = nullptr);

// a [M, K] FP8, sa [M, ceil(K/128)], b packed with G groups, m_indices I32 [M] in [-1, G).
// Rows of one expert need not be contiguous or padded; each run of equal m_indices is one
// problem (so grouping an expert's rows together, as a MoE dispatch does, is what makes it fast).
void gemm_fp8_grouped_contiguous(const Tensor& a, const Tensor& sa, const PackedWeights& b,
                                 const Tensor& m_indices, Tensor& d, const Tensor* c = nullptr);

// a [G, M_max, K] FP8, sa [G, M_max, ceil(K/128)], b packed with G groups, masked_m I32 [G] with
// 0 <= masked_m[g] <= M_max, d [G, M_max, N].
void gemm_fp8_grouped_masked(const Tensor& a, const Tensor& sa, const PackedWeights& b,
                             const Tensor& masked_m, Tensor& d, const Tensor* c = nullptr);

// a BF16 [M, K], b packed BF16.
void gemm_bf16_nt(const Tensor& a, const PackedWeights& b, Tensor& d, const Tensor* c = nullptr);
void gemm_bf16_nt(const Tensor& a, const Tensor& b, Tensor& d, const Tensor* c = nullptr);

// Batched BF16 GEMM: a BF16 [G, M_max, K], b packed BF16 with G groups, masked_m I32 [G],
// d [G, M_max, N]. (MLA's per-head absorbed projections: one group per head.)
void gemm_bf16_grouped_masked(const Tensor& a, const PackedWeights& b, const Tensor& masked_m, Tensor& d,
                              const Tensor* c = nullptr);

}  // namespace cachalot::gemm
