// MLA decode attention over the paged cache (our FlashMLA), CPU.
//
//   mla_decode(q [b, s_q, h_q, latent + rope], cache, block_table [b, max_blocks] I32,
//              cache_seqlens [b] I32, plan, softmax_scale, causal, out, lse)
//   out [b, s_q, h_q, latent] (F32 or BF16) = softmax(scale * q K^T) V per query row, where
//   K = the request's cached tokens (latent + rope) and V = their latent part;
//   lse [b, h_q, s_q] F32 = the natural-log log-sum-exp of each row's scaled scores.
//
// The queries are the absorbed ones (q_nope x W_UK per head, then the roped part), so all heads
// share one KV head. With causal and s_q > 1 (speculative / MTP verification), query i of s_q
// sees keys up to s_k - s_q + i (bottom-right aligned); with s_q = 1 causal changes nothing.
// A request with no cached tokens gets out = 0 and lse = -inf. Each split of the plan is
// computed with an online softmax in FP32 and the splits are merged by their lse.
//
// Precision: queries and keys enter the dot products as BF16 (F32 queries and FP8-dequantized
// keys are rounded), products accumulate in FP32, probabilities are rounded to BF16 for P V
// (as FlashAttention/FlashMLA do) while the softmax sums and lse stay FP32.
#pragma once

#include "core/tensor.h"
#include "mla/paged_kv_cache.h"
#include "mla/split_plan.h"

namespace cachalot::mla {

void mla_decode(const Tensor& q, const PagedKvCache& cache, const Tensor& block_table, const Tensor& cache_seqlens,
                const SplitPlan& plan, float softmax_scale, bool causal, Tensor& out, Tensor& lse);

}  // namespace cachalot::mla
