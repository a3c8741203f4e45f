// MLA prefill attention in the expanded (non-absorbed, "MHA") form, CPU.
//
//   mla_prefill(q [Q, H, dn + dr], kv [Kn, H, dn + dv], k_rope [Kn, dr], softmax_scale, causal,
//               out [Q, H, dv], lse [H, Q] or an undefined Tensor)
//   per head h: K = [kv[:, h, :dn] | k_rope] (dn + dr values per key), V = kv[:, h, dn:],
//   out[:, h] = softmax(scale * q[:, h] K^T) V, lse[h] = the natural-log log-sum-exp of the
//   scaled scores (-inf for a query that sees no key).
//
// For a prompt, attending with per-head keys and values expanded from the cached latents (kv =
// kv_b's output: nope keys then values per head; the roped key is shared by the heads) costs
// 2 (dn + dr) + 2 dv FLOPs per query, key and head, against 2 (latent + dr) + 2 latent in the
// absorbed form mla_decode runs: 640 against 2176 for DeepSeek-V3, for kv_b's projection of each
// key once. DeepSeek serves prefill this way and decode absorbed; the model picks per sequence.
//
// The queries are one sequence's last Q tokens: with causal, query i sits at position
// Kn - Q + i and sees keys [0, Kn - Q + i] (bottom-right aligned, as mla_decode). dn, dr and dv
// come from the shapes (dv = out's last dimension); dv must be a multiple of 16 and dn + dr
// even. Inputs may be strided views (the model passes head ranges) but their last dimension
// must be contiguous. q, kv and k_rope may be F32 or BF16; out and lse are F32.
//
// Numerics as mla_decode: q and K/V enter the products as BF16, FP32 sums, an online softmax in
// FP32 over 128-key chunks, probabilities rounded to BF16 for P V. Tasks of one head and a
// range of 96-query blocks run in parallel on the core thread pool, each packing the keys its
// queries see (with as many heads as threads, each head's keys are packed once).
#pragma once

#include "core/tensor.h"

namespace cachalot::mla {

void mla_prefill(const Tensor& q, const Tensor& kv, const Tensor& k_rope, float softmax_scale, bool causal,
                 Tensor& out, Tensor& lse);

}  // namespace cachalot::mla
