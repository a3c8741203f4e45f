#include "mla/mla_decode.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/convert.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "core/trace.h"

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

// Dot product with 16 independent partial sums, so the compiler can vectorise it without
// reassociating one running sum.
inline float dot(const float* a, const float* b, int64_t n) {
  float part[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) part[l] += a[i + l] * b[i + l];
  for (; i < n; ++i) part[0] += a[i] * b[i];
  float s = 0;
  for (float p : part) s += p;
  return s;
}

// One split: rows = s_q x h_q query rows over tokens [begin, end) of one request, by blocks of
// 64 tokens with an online softmax. Writes the split's normalised output and lse.
void run_split(const Shapes& s, const CacheConfig& config, const PagedKvCache& cache, const int32_t* table_row,
               int64_t seqlen, const float* q_rows, const Split& split, float scale, bool causal, float* out_rows,
               float* lse_rows) {
  const int64_t rows = s.rows, d = s.latent, kd = s.key_dim;
  std::vector<float> keys(static_cast<size_t>(kBlockTokens * kd)), scores(static_cast<size_t>(kBlockTokens));
  std::vector<float> m(static_cast<size_t>(rows), kNegInf), l(static_cast<size_t>(rows), 0.0f);
  std::fill_n(out_rows, rows * d, 0.0f);
  for (int64_t t0 = split.token_begin; t0 < split.token_end; t0 += kBlockTokens) {
    const int64_t n = std::min<int64_t>(kBlockTokens - t0 % kBlockTokens, split.token_end - t0);
    const int32_t block = table_row[t0 / kBlockTokens];
    for (int64_t i = 0; i < n; ++i) decode_token(config, cache.token(block, t0 % kBlockTokens + i), keys.data() + i * kd);
    for (int64_t row = 0; row < rows; ++row) {
      // Bottom-right aligned causal mask: query position sq sees keys < seqlen - s_q + sq + 1.
      const int64_t sq = row / s.h_q;
      const int64_t visible = causal ? seqlen - s.s_q + sq + 1 : seqlen;
      const int64_t valid = std::clamp<int64_t>(visible - t0, 0, n);
      if (valid == 0) continue;
      const float* qr = q_rows + row * kd;
      float block_max = kNegInf;
      for (int64_t i = 0; i < valid; ++i) {
        scores[i] = scale * dot(qr, keys.data() + i * kd, kd);
        block_max = std::max(block_max, scores[i]);
      }
      const float new_max = std::max(m[row], block_max);
      const float correction = m[row] == kNegInf ? 0.0f : std::exp(m[row] - new_max);
      float* acc = out_rows + row * d;
      if (correction != 1.0f)
        for (int64_t c = 0; c < d; ++c) acc[c] *= correction;
      float sum = 0;
      for (int64_t i = 0; i < valid; ++i) {
        const float p = std::exp(scores[i] - new_max);
        sum += p;
        const float* v = keys.data() + i * kd;
        for (int64_t c = 0; c < d; ++c) acc[c] += p * v[c];
      }
      l[row] = l[row] * correction + sum;
      m[row] = new_max;
    }
  }
  for (int64_t row = 0; row < rows; ++row) {
    if (l[row] == 0.0f) {  // no visible keys
      lse_rows[row] = kNegInf;
      continue;
    }
    const float inv = 1.0f / l[row];
    for (int64_t c = 0; c < d; ++c) out_rows[row * d + c] *= inv;
    lse_rows[row] = m[row] + std::log(l[row]);
  }
}

}  // namespace

void mla_decode(const Tensor& q, const PagedKvCache& cache, const Tensor& block_table, const Tensor& cache_seqlens,
                const SplitPlan& plan, float softmax_scale, bool causal, Tensor& out, Tensor& lse) {
  const Shapes s = check_arguments(q, cache, block_table, cache_seqlens, plan, out, lse);
  trace::Span span("mla_decode", "mla");
  span.arg("batch", s.batch).arg("h_q", s.h_q).arg("s_q", s.s_q).arg("splits", static_cast<int64_t>(plan.splits.size()));
  const int64_t rows = s.rows, d = s.latent, kd = s.key_dim;

  // Queries as FP32 rows ([b][s_q * h_q][key_dim]).
  std::vector<float> q32(static_cast<size_t>(s.batch * rows * kd));
  if (q.dtype() == DType::kF32)
    std::copy_n(q.data<float>(), q32.size(), q32.data());
  else
    convert(q.data<bf16>(), q32.data(), q32.size());

  const size_t num_splits = plan.splits.size();
  std::vector<float> part_out(num_splits * static_cast<size_t>(rows * d));
  std::vector<float> part_lse(num_splits * static_cast<size_t>(rows));
  const int32_t* seqlens = cache_seqlens.data<int32_t>();
  const int32_t* table = block_table.data<int32_t>();
  ThreadPool::global().parallel_for(0, plan.num_workers(), [&](int64_t w0, int64_t w1, int) {
    for (int64_t w = w0; w < w1; ++w)
      for (int32_t i = plan.worker_begin[w]; i < plan.worker_begin[w + 1]; ++i) {
        const Split& sp = plan.splits[i];
        run_split(s, cache.config(), cache, table + sp.request * s.max_blocks, seqlens[sp.request],
                  q32.data() + sp.request * rows * kd, sp, softmax_scale, causal, part_out.data() + i * rows * d,
                  part_lse.data() + i * rows);
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
          const float* po = part_out.data() + (sp * rows + row) * d;
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
