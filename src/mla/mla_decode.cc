#include "mla/mla_decode.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/convert.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "core/trace.h"
#include "mla/cpu/chunk_attention.h"
#include "mla/cpu/chunk_pack.h"

namespace cachalot::mla {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Shapes {
  int64_t batch, s_q, h_q, rows, key_dim, latent, max_blocks;
};

Shapes check_arguments(const Tensor& q, const PagedKvCache& cache, const Tensor& block_table,
                       const Tensor& cache_seqlens, const SplitPlan& plan, const Tensor& out, const Tensor& lse) {
  const CacheConfig& c = cache.config();
  CACHALOT_CHECK_ARG(q.dim() == 4 && (q.dtype() == DType::kF32 || q.dtype() == DType::kBF16) && q.is_contiguous(),
                     "mla_decode: q must be contiguous F32 or BF16 [batch, s_q, h_q, {}], got {}", c.key_dim(),
                     q.description());
  Shapes s{q.size(0), q.size(1), q.size(2), q.size(1) * q.size(2), q.size(3), c.latent_dim, 0};
  CACHALOT_CHECK_ARG(s.key_dim == c.key_dim(), "mla_decode: q's last dimension is {} but the cache holds {} + {}",
                     s.key_dim, c.latent_dim, c.rope_dim);
  CACHALOT_CHECK_ARG(cache_seqlens.dtype() == DType::kI32 && cache_seqlens.shape() == Dims{s.batch} &&
                         cache_seqlens.is_contiguous(),
                     "mla_decode: cache_seqlens must be contiguous I32 [{}], got {}", s.batch,
                     cache_seqlens.description());
  CACHALOT_CHECK_ARG(block_table.dtype() == DType::kI32 && block_table.dim() == 2 && block_table.size(0) == s.batch &&
                         block_table.is_contiguous(),
                     "mla_decode: block_table must be contiguous I32 [{}, max_blocks], got {}", s.batch,
                     block_table.description());
  s.max_blocks = block_table.size(1);
  CACHALOT_CHECK_ARG(out.shape() == (Dims{s.batch, s.s_q, s.h_q, s.latent}) &&
                         (out.dtype() == DType::kF32 || out.dtype() == DType::kBF16) && out.is_contiguous() &&
                         out.writable(),
                     "mla_decode: out must be writable contiguous F32 or BF16 [{}, {}, {}, {}], got {}", s.batch, s.s_q,
                     s.h_q, s.latent, out.description());
  CACHALOT_CHECK_ARG(lse.shape() == (Dims{s.batch, s.h_q, s.s_q}) && lse.dtype() == DType::kF32 &&
                         lse.is_contiguous() && lse.writable(),
                     "mla_decode: lse must be writable contiguous F32 [{}, {}, {}], got {}", s.batch, s.h_q, s.s_q,
                     lse.description());
  const int32_t* seqlens = cache_seqlens.data<int32_t>();
  CACHALOT_CHECK_ARG(plan.seqlens.size() == static_cast<size_t>(s.batch) &&
                         std::equal(plan.seqlens.begin(), plan.seqlens.end(), seqlens),
                     "mla_decode: the split plan was made for other cache_seqlens; call make_split_plan again");
  const int32_t* table = block_table.data<int32_t>();
  for (int64_t r = 0; r < s.batch; ++r) {
    const int64_t blocks = (seqlens[r] + kBlockTokens - 1) / kBlockTokens;
    CACHALOT_CHECK_ARG(blocks <= s.max_blocks, "mla_decode: request {} has {} cached tokens but its block table holds {} blocks",
                       r, seqlens[r], s.max_blocks);
    for (int64_t b = 0; b < blocks; ++b) {
      const int32_t block = table[r * s.max_blocks + b];
      CACHALOT_CHECK_ARG(block >= 0 && block < cache.num_blocks(),
                         "mla_decode: block_table[{}][{}] = {} is outside the cache's {} blocks", r, b, block,
                         cache.num_blocks());
    }
  }
  return s;
}

using pack::kChunkTokens;
using pack::kPanelDwords;
// Query rows of a split above this run in blocks of kRowBlock over passes of kPassChunks
// chunks (packed once per pass), so a block's accumulators, scores and queries stay in cache:
// a prompt chunk attended absorbed has 64 x 128 heads = 8192 rows, 16 MB of accumulators,
// which streamed from memory for every 128 tokens when all rows went through each chunk.
constexpr int64_t kMaxSingleBlockRows = 128;  // a decode step of 128 heads: one block
constexpr int64_t kRowBlock = 96;
constexpr int64_t kPassChunks = 8;

// Per-thread buffers for one split, sized once per call.
struct Scratch {
  std::vector<uint16_t> q;        // BF16 query rows, zero-padded to kq_pad
  std::vector<uint16_t> tokens;   // BF16 keys of one chunk's tokens [128][key_dim]
  std::vector<uint32_t> kt;       // per chunk of the pass: K^T panels, 8 panels x kq_pad/128 blocks x 4 KiB
  std::vector<uint32_t> vt;       // per chunk of the pass: V panels, latent/16 panels x 4 KiB
  std::vector<float> scores;      // [row block][128]
  std::vector<uint16_t> p;        // BF16 probabilities [row block][128]
  std::vector<float> m, l;        // per row of the split
  std::vector<int32_t> valid;     // per row of the block: visible tokens of the chunk
};

// Gathers chunk [t0, t0 + n) of the request's cached tokens as BF16 (FP8 caches dequantized,
// then rounded; tokens past n zero) and packs them into K^T and V panels (cpu/chunk_pack.h).
void gather_and_pack(const CacheConfig& config, const PagedKvCache& cache, const int32_t* table_row, int64_t t0,
                     int64_t n, int64_t kq_blocks, uint32_t* kt, uint32_t* vt, Scratch& w) {
  const int64_t kd = config.key_dim();
  w.tokens.resize(static_cast<size_t>(kChunkTokens * kd));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = t0 + i;
    cache.read_token_bf16(table_row[t / kBlockTokens], t % kBlockTokens, w.tokens.data() + i * kd);
  }
  // Tokens past the split's end are zero keys (their probabilities are zero too).
  if (n < kChunkTokens) std::fill(w.tokens.begin() + n * kd, w.tokens.end(), 0);
  pack::pack_kt(w.tokens.data(), kd, kq_blocks, kt);
  pack::pack_v(w.tokens.data(), kd, config.latent_dim, vt);
}

// One split: rows = s_q x h_q query rows over tokens [begin, end) of one request, 128 tokens at
// a time (cpu/chunk_attention.h: S = Q K^T and O += P V through the BF16 tile kernel, the online
// softmax in between in FP32, P rounded to BF16 for the product as FlashAttention does, the row
// sums and so the lse from the FP32 values). Writes the split's normalised output and lse.
void run_split(const Shapes& s, const CacheConfig& config, const PagedKvCache& cache, const int32_t* table_row,
               int64_t seqlen, const uint16_t* q_bf16, const Split& split, float scale, bool causal, float* out_rows,
               float* lse_rows, Scratch& w) {
  const int64_t rows = s.rows, d = s.latent, kd = s.key_dim;
  const int64_t kq_blocks = (kd + 127) / 128, kq_pad = kq_blocks * 128, v_panels = d / 16;
  const int64_t kt_chunk_dwords = 8 * kq_blocks * kPanelDwords, vt_chunk_dwords = v_panels * kPanelDwords;
  const bool blocked = rows > kMaxSingleBlockRows;
  const int64_t row_block = blocked ? kRowBlock : rows, pass_chunks = blocked ? kPassChunks : 1;
  w.q.resize(static_cast<size_t>(rows * kq_pad));
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(q_bf16 + r * kd, kd, w.q.data() + r * kq_pad);
    std::fill_n(w.q.data() + r * kq_pad + kd, kq_pad - kd, uint16_t{0});
  }
  // K^T panels: the pairs past key_dim stay zero (never written); a size change re-zeroes.
  if (w.kt.size() != static_cast<size_t>(pass_chunks * kt_chunk_dwords))
    w.kt.assign(static_cast<size_t>(pass_chunks * kt_chunk_dwords), 0);
  w.vt.resize(static_cast<size_t>(pass_chunks * vt_chunk_dwords));
  w.scores.resize(static_cast<size_t>(row_block * kChunkTokens));
  w.p.resize(static_cast<size_t>(row_block * kChunkTokens));
  w.m.assign(static_cast<size_t>(rows), kNegInf);
  w.l.assign(static_cast<size_t>(rows), 0.0f);
  w.valid.resize(static_cast<size_t>(row_block));
  std::fill_n(out_rows, rows * d, 0.0f);

  const int64_t pass_tokens = pass_chunks * kChunkTokens;
  for (int64_t pass0 = split.token_begin; pass0 < split.token_end; pass0 += pass_tokens) {
    const int64_t chunks = std::min(pass_tokens, split.token_end - pass0 + kChunkTokens - 1) / kChunkTokens;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t t0 = pass0 + c * kChunkTokens;
      gather_and_pack(config, cache, table_row, t0, std::min<int64_t>(kChunkTokens, split.token_end - t0), kq_blocks,
                      w.kt.data() + c * kt_chunk_dwords, w.vt.data() + c * vt_chunk_dwords, w);
    }
    for (int64_t r0 = 0; r0 < rows; r0 += row_block) {
      const int64_t block_rows = std::min(row_block, rows - r0);
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t t0 = pass0 + c * kChunkTokens, n = std::min<int64_t>(kChunkTokens, split.token_end - t0);
        // Bottom-right aligned causal mask: query position sq sees keys < seqlen - s_q + sq + 1.
        for (int64_t r = 0; r < block_rows; ++r) {
          const int64_t visible = causal ? seqlen - s.s_q + (r0 + r) / s.h_q + 1 : seqlen;
          w.valid[static_cast<size_t>(r)] = static_cast<int32_t>(std::clamp<int64_t>(visible - t0, 0, n));
        }
        chunk::Step step;
        step.rows = block_rows;
        step.q = w.q.data() + r0 * kq_pad, step.key_dim = kd;
        step.kt = w.kt.data() + c * kt_chunk_dwords, step.vt = w.vt.data() + c * vt_chunk_dwords;
        step.v_panels = v_panels;
        step.valid = w.valid.data(), step.scale = scale;
        step.scores = w.scores.data(), step.p = w.p.data();
        step.m = w.m.data() + r0, step.l = w.l.data() + r0;
        step.out = out_rows + r0 * d, step.ld_out = d;
        chunk::attend(step);
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    if (w.l[r] == 0.0f) {  // no visible keys
      lse_rows[r] = kNegInf;
      continue;
    }
    const float inv = 1.0f / w.l[r];
    for (int64_t c = 0; c < d; ++c) out_rows[r * d + c] *= inv;
    lse_rows[r] = w.m[r] + std::log(w.l[r]);
  }
}

}  // namespace

void mla_decode(const Tensor& q, const PagedKvCache& cache, const Tensor& block_table, const Tensor& cache_seqlens,
                const SplitPlan& plan, float softmax_scale, bool causal, Tensor& out, Tensor& lse) {
  const Shapes s = check_arguments(q, cache, block_table, cache_seqlens, plan, out, lse);
  trace::Span span("mla_decode", "mla");
  span.arg("batch", s.batch).arg("h_q", s.h_q).arg("s_q", s.s_q).arg("splits", static_cast<int64_t>(plan.splits.size()));
  const int64_t rows = s.rows, d = s.latent, kd = s.key_dim;

  // Queries as BF16 rows ([b][s_q * h_q][key_dim]): BF16 input is used in place, F32 rounded.
  std::vector<uint16_t> q_rounded;
  const uint16_t* q16 = reinterpret_cast<const uint16_t*>(q.raw_data());
  if (q.dtype() == DType::kF32) {
    q_rounded.resize(static_cast<size_t>(s.batch * rows * kd));
    convert(q.data<float>(), reinterpret_cast<bf16*>(q_rounded.data()), q_rounded.size());
    q16 = q_rounded.data();
  }

  // Partial results per split, in buffers kept per calling thread (every element is written by
  // its split, so nothing is cleared; fresh zeroed pages every call cost more than the decode).
  const size_t num_splits = plan.splits.size();
  // (Workers must not name these thread_locals: they would see their own. They get pointers.)
  thread_local std::vector<float> out_buffer, lse_buffer;
  if (out_buffer.size() < num_splits * static_cast<size_t>(rows * d)) out_buffer.resize(num_splits * static_cast<size_t>(rows * d));
  if (lse_buffer.size() < num_splits * static_cast<size_t>(rows)) lse_buffer.resize(num_splits * static_cast<size_t>(rows));
  float* const part_out = out_buffer.data();
  float* const part_lse = lse_buffer.data();
  const int32_t* seqlens = cache_seqlens.data<int32_t>();
  const int32_t* table = block_table.data<int32_t>();
  ThreadPool::global().parallel_for(0, plan.num_workers(), [&](int64_t w0, int64_t w1, int) {
    thread_local Scratch scratch;
    for (int64_t w = w0; w < w1; ++w)
      for (int32_t i = plan.worker_begin[w]; i < plan.worker_begin[w + 1]; ++i) {
        const Split& sp = plan.splits[i];
        run_split(s, cache.config(), cache, table + sp.request * s.max_blocks, seqlens[sp.request],
                  q16 + sp.request * rows * kd, sp, softmax_scale, causal, part_out + i * rows * d,
                  part_lse + i * rows, scratch);
      }
  }, Schedule::kDynamic, 1);

  // Combine: weight each split by exp(lse_split - lse_max).
  ThreadPool::global().parallel_for(0, s.batch * rows, [&](int64_t i0, int64_t i1, int) {
    std::vector<float> acc(static_cast<size_t>(d));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = i / rows, row = i % rows;
      float lse_max = kNegInf;
      for (int32_t k = plan.request_begin[r]; k < plan.request_begin[r + 1]; ++k)
        lse_max = std::max(lse_max, part_lse[plan.request_splits[k] * rows + row]);
      std::fill(acc.begin(), acc.end(), 0.0f);
      float total = 0;
      if (lse_max != kNegInf) {
        for (int32_t k = plan.request_begin[r]; k < plan.request_begin[r + 1]; ++k) {
          const int32_t sp = plan.request_splits[k];
          const float lse_s = part_lse[sp * rows + row];
          if (lse_s == kNegInf) continue;
          const float w = std::exp(lse_s - lse_max);
          total += w;
          const float* po = part_out + (sp * rows + row) * d;
          for (int64_t c = 0; c < d; ++c) acc[c] += w * po[c];
        }
        for (int64_t c = 0; c < d; ++c) acc[c] /= total;
      }
      const int64_t sq = row / s.h_q, h = row % s.h_q;
      lse.mutable_data<float>()[(r * s.h_q + h) * s.s_q + sq] = lse_max == kNegInf ? kNegInf : lse_max + std::log(total);
      const int64_t o = i * d;  // out is [b][s_q][h_q][d], the same order as rows
      if (out.dtype() == DType::kF32)
        std::copy(acc.begin(), acc.end(), out.mutable_data<float>() + o);
      else
        convert(acc.data(), out.mutable_data<bf16>() + o, static_cast<size_t>(d));
    }
  });
}

}  // namespace cachalot::mla
