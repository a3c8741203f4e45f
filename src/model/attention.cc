#include "model/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "core/convert.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "core/trace.h"
#include "gemm/gemm.h"
#include "mla/mla_decode.h"
#include "mla/mla_prefill.h"
#include "mla/split_plan.h"

namespace cachalot::model {
namespace {

Tensor all_rows_mask(int64_t groups, int64_t rows) {
  Tensor m = Tensor::empty(DType::kI32, {groups});
  std::fill_n(m.mutable_data<int32_t>(), groups, static_cast<int32_t>(rows));
  return m;
}

}  // namespace

Attention::Attention(const ModelConfig& config, AttentionWeights& weights, Precision precision,
                     std::optional<AttentionForm> forced_form)
    : config_(&config), w_(&weights), precision_(precision), forced_form_(forced_form), rope_(config) {
  for (Linear* l : {&w_->q_a, &w_->q_b, &w_->q, &w_->kv_a, &w_->o})
    if (l->weight().defined() && l->weight().numel() > 0) l->prepare(precision);
  const int64_t heads = config.num_attention_heads, nope = config.qk_nope_head_dim, v = config.v_head_dim,
                latent = config.kv_lora_rank;
  const Tensor kv_b = w_->kv_b.dequantized();  // [H * (nope + v), latent]
  if (precision == Precision::kExact) {
    kv_b_f32_ = kv_b;
    return;
  }
  // Split kv_b per head into W_UK^T [latent][nope] and W_UV [v][latent], rounded to BF16.
  Tensor uk = Tensor::empty(DType::kBF16, {heads, latent, nope});
  Tensor uv = Tensor::empty(DType::kBF16, {heads, v, latent});
  const float* src = kv_b.data<float>();
  for (int64_t h = 0; h < heads; ++h) {
    const float* head = src + h * (nope + v) * latent;
    for (int64_t d = 0; d < nope; ++d)
      for (int64_t c = 0; c < latent; ++c) uk.mutable_at<bf16>(h, c, d) = float_to_bf16(head[d * latent + c]);
    convert(head + nope * latent, uv.mutable_data<bf16>() + h * v * latent, static_cast<size_t>(v * latent));
  }
  w_uk_ = gemm::pack_bf16_weights(uk);
  w_uv_ = gemm::pack_bf16_weights(uv);
  Tensor kv_b16 = Tensor::empty(DType::kBF16, kv_b.shape());
  convert(kv_b.data<float>(), kv_b16.mutable_data<bf16>(), static_cast<size_t>(kv_b.numel()));
  kv_b_ = gemm::pack_bf16_weights(kv_b16);
}

Tensor Attention::project_queries(const Tensor& x, const BatchLayout& layout) const {
  const ModelConfig& c = *config_;
  Tensor q;
  if (c.q_lora_rank > 0) {
    Tensor qa = w_->q_a.forward(x);
    rms_norm(qa.data<float>(), w_->q_a_norm.data<float>(), qa.size(0), c.q_lora_rank, c.rms_norm_eps,
             qa.mutable_data<float>());
    round_activations(precision_, qa);
    q = w_->q_b.forward(qa);
  } else {
    q = w_->q.forward(x);
  }
  const int64_t heads = c.num_attention_heads, qk = c.qk_head_dim();
  for (int64_t r = 0; r < layout.rows(); ++r)
    rope_.apply(q.mutable_data<float>() + r * heads * qk + c.qk_nope_head_dim, heads, qk, layout.row_pos[r]);
  round_activations(precision_, q);
  return q.reshape({layout.rows(), heads, qk});
}

void Attention::write_cache(const Tensor& x, const BatchLayout& layout, mla::PagedKvCache& cache) const {
  const ModelConfig& c = *config_;
  const int64_t latent = c.kv_lora_rank, rope = c.qk_rope_head_dim, width = latent + rope;
  Tensor kv = w_->kv_a.forward(x);  // [rows, latent + rope]
  float* p = kv.mutable_data<float>();
  for (int64_t r = 0; r < layout.rows(); ++r) {
    float* row = p + r * width;
    rms_norm(row, w_->kv_a_norm.data<float>(), 1, latent, c.rms_norm_eps, row);
    rope_.apply(row + latent, 1, rope, layout.row_pos[r]);
  }
  round_activations(precision_, kv);
  for (int64_t r = 0; r < layout.rows(); ++r)
    cache.write_token(layout.block_of(r), layout.slot_of(r), p + r * width, p + r * width + latent);
}

Tensor Attention::absorb_queries(const Tensor& q) const {
  const ModelConfig& c = *config_;
  const int64_t rows = q.size(0), heads = c.num_attention_heads, nope = c.qk_nope_head_dim,
                rope = c.qk_rope_head_dim, qk = c.qk_head_dim(), latent = c.kv_lora_rank, v = c.v_head_dim,
                width = latent + rope;
  Tensor out = Tensor::empty(DType::kF32, {rows, heads, width});
  float* o = out.mutable_data<float>();
  const float* qd = q.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < heads; ++h)
      std::copy_n(qd + (r * heads + h) * qk + nope, rope, o + (r * heads + h) * width + latent);
  if (precision_ == Precision::kExact) {
    for (int64_t h = 0; h < heads; ++h)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(rows), static_cast<blasint>(latent),
                  static_cast<blasint>(nope), 1.0f, qd + h * qk, static_cast<blasint>(heads * qk),
                  kv_b_f32_.data<float>() + h * (nope + v) * latent, static_cast<blasint>(latent), 0.0f,
                  o + h * width, static_cast<blasint>(heads * width));
    return out;
  }
  Tensor a = Tensor::empty(DType::kBF16, {heads, rows, nope});  // q_nope per head
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t r = 0; r < rows; ++r)
      convert(qd + (r * heads + h) * qk, a.mutable_data<bf16>() + (h * rows + r) * nope, static_cast<size_t>(nope));
  Tensor d = Tensor::empty(DType::kF32, {heads, rows, latent});
  gemm::gemm_bf16_grouped_masked(a, w_uk_, all_rows_mask(heads, rows), d);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t r = 0; r < rows; ++r)
      std::copy_n(d.data<float>() + (h * rows + r) * latent, latent, o + (r * heads + h) * width);
  round_activations(precision_, out);
  return out;
}

Tensor Attention::attend_exact(const Tensor& ql, const BatchLayout& layout, const mla::PagedKvCache& cache) const {
  const ModelConfig& c = *config_;
  const int64_t rows = layout.rows(), heads = c.num_attention_heads, latent = c.kv_lora_rank,
                width = latent + c.qk_rope_head_dim;
  const float scale = static_cast<float>(c.softmax_scale());
  Tensor out = Tensor::empty(DType::kF32, {rows, heads, latent});
  ThreadPool::global().parallel_for(0, rows * heads, [&](int64_t i0, int64_t i1, int) {
    std::vector<float> scores;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = i / heads, seq = layout.row_seq[r], keys = layout.row_pos[r] + 1;
      const float* q = ql.data<float>() + i * width;
      const auto key = [&](int64_t t) {
        return reinterpret_cast<const float*>(cache.token(layout.block_table[seq][t / 64], t % 64));
      };
      scores.resize(static_cast<size_t>(keys));
      float max = -std::numeric_limits<float>::infinity();
      for (int64_t t = 0; t < keys; ++t) {
        const float* k = key(t);
        float s = 0;
        for (int64_t j = 0; j < width; ++j) s += q[j] * k[j];
        scores[t] = s * scale;
        max = std::max(max, scores[t]);
      }
      float sum = 0;
      for (int64_t t = 0; t < keys; ++t) sum += scores[t] = std::exp(scores[t] - max);
      float* o = out.mutable_data<float>() + i * latent;
      std::fill_n(o, latent, 0.0f);
      for (int64_t t = 0; t < keys; ++t) {
        const float* k = key(t);
        const float p = scores[t] / sum;
        for (int64_t j = 0; j < latent; ++j) o[j] += p * k[j];
      }
    }
  });
  return out;
}

Tensor Attention::attend_fast(const Tensor& ql, const BatchLayout& layout, const mla::PagedKvCache& cache) const {
  const ModelConfig& c = *config_;
  const int64_t heads = c.num_attention_heads, latent = c.kv_lora_rank, width = latent + c.qk_rope_head_dim;
  Tensor out = Tensor::empty(DType::kF32, {layout.rows(), heads, latent});
  // Query chunks (a sequence's rows, at most kPrefillQueryChunk each), grouped by length so
  // one mla_decode call takes all chunks of a length: a decode step is a single call.
  struct Chunk {
    int64_t seq, row0;
  };
  std::map<int64_t, std::vector<Chunk>> by_length;
  for (int64_t s = 0; s < layout.sequences(); ++s)
    for (int64_t r0 = layout.seq_begin[s]; r0 < layout.seq_begin[s + 1]; r0 += kPrefillQueryChunk)
      by_length[std::min(kPrefillQueryChunk, layout.seq_begin[s + 1] - r0)].push_back({s, r0});
  Tensor ql_bf16 = Tensor::empty(DType::kBF16, ql.shape());
  convert(ql.data<float>(), ql_bf16.mutable_data<bf16>(), static_cast<size_t>(ql.numel()));
  for (const auto& [len, chunks] : by_length) {
    const int64_t b = static_cast<int64_t>(chunks.size());
    int64_t max_blocks = 1;
    Tensor seqlens = Tensor::empty(DType::kI32, {b});
    for (int64_t i = 0; i < b; ++i) {
      const int64_t end_pos = layout.row_pos[chunks[i].row0] + len;  // keys visible to the chunk's last query
      seqlens.mutable_data<int32_t>()[i] = static_cast<int32_t>(end_pos);
      max_blocks = std::max(max_blocks, (end_pos + 63) / 64);
    }
    Tensor table = Tensor::zeros(DType::kI32, {b, max_blocks});
    Tensor q = Tensor::empty(DType::kBF16, {b, len, heads, width});
    for (int64_t i = 0; i < b; ++i) {
      const auto& bt = layout.block_table[chunks[i].seq];
      const int64_t used = (seqlens.data<int32_t>()[i] + 63) / 64;
      std::copy_n(bt.data(), used, table.mutable_data<int32_t>() + i * max_blocks);
      std::copy_n(ql_bf16.data<bf16>() + chunks[i].row0 * heads * width, len * heads * width,
                  q.mutable_data<bf16>() + i * len * heads * width);
    }
    const mla::SplitPlan plan = mla::make_split_plan(seqlens, ThreadPool::global().num_threads());
    Tensor o = Tensor::empty(DType::kF32, {b, len, heads, latent});
    Tensor lse = Tensor::empty(DType::kF32, {b, heads, len});
    mla::mla_decode(q, cache, table, seqlens, plan, static_cast<float>(c.softmax_scale()), /*causal=*/true, o, lse);
    for (int64_t i = 0; i < b; ++i)
      std::copy_n(o.data<float>() + i * len * heads * latent, len * heads * latent,
                  out.mutable_data<float>() + chunks[i].row0 * heads * latent);
  }
  return out;
}

Tensor Attention::expand_values(const Tensor& ol) const {
  const ModelConfig& c = *config_;
  const int64_t rows = ol.size(0), heads = c.num_attention_heads, nope = c.qk_nope_head_dim, v = c.v_head_dim,
                latent = c.kv_lora_rank;
  Tensor out = Tensor::empty(DType::kF32, {rows, heads * v});
  if (precision_ == Precision::kExact) {
    for (int64_t h = 0; h < heads; ++h)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(rows), static_cast<blasint>(v),
                  static_cast<blasint>(latent), 1.0f, ol.data<float>() + h * latent,
                  static_cast<blasint>(heads * latent),
                  kv_b_f32_.data<float>() + (h * (nope + v) + nope) * latent, static_cast<blasint>(latent), 0.0f,
                  out.mutable_data<float>() + h * v, static_cast<blasint>(heads * v));
    return out;
  }
  Tensor a = Tensor::empty(DType::kBF16, {heads, rows, latent});
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t r = 0; r < rows; ++r)
      convert(ol.data<float>() + (r * heads + h) * latent, a.mutable_data<bf16>() + (h * rows + r) * latent,
              static_cast<size_t>(latent));
  Tensor d = Tensor::empty(DType::kF32, {heads, rows, v});
  gemm::gemm_bf16_grouped_masked(a, w_uv_, all_rows_mask(heads, rows), d);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < heads; ++h)
      std::copy_n(d.data<float>() + (h * rows + r) * v, v, out.mutable_data<float>() + (r * heads + h) * v);
  round_activations(precision_, out);
  return out;
}

Tensor Attention::attend_absorbed(const Tensor& q, const BatchLayout& layout, const mla::PagedKvCache& cache) const {
  Tensor q_latent, o_latent;
  {
    trace::Span s("absorb_queries", "model");
    q_latent = absorb_queries(q);
  }
  {
    trace::Span s("attend", "model");
    o_latent = precision_ == Precision::kExact ? attend_exact(q_latent, layout, cache) : attend_fast(q_latent, layout, cache);
  }
  trace::Span s("expand_values", "model");
  return expand_values(o_latent);
}

namespace {

// Heads per kv_b slice for `keys` keys: as many as fit `bytes`, in units whose rows
// (heads x (nope + v)) start on a 128-row block of the packed weights.
int64_t heads_per_slice(const ModelConfig& c, int64_t keys, int64_t bytes) {
  const int64_t heads = c.num_attention_heads, per_head = c.qk_nope_head_dim + c.v_head_dim;
  int64_t unit = 1;
  while (unit < heads && (unit * per_head) % 128 != 0) ++unit;
  const int64_t fit = bytes / std::max<int64_t>(1, keys * per_head * 2);
  return std::min(heads, std::max(unit, fit / unit * unit));
}

}  // namespace

void Attention::attend_expanded(const Tensor& q, const BatchLayout& layout, std::span<const int64_t> seqs,
                                const mla::PagedKvCache& cache, Tensor& values) const {
  trace::Span span("attend_expanded", "model");
  const ModelConfig& c = *config_;
  const int64_t heads = c.num_attention_heads, latent = c.kv_lora_rank, rope = c.qk_rope_head_dim,
                per_head = c.qk_nope_head_dim + c.v_head_dim, v = c.v_head_dim;
  Tensor values3 = values.reshape({values.size(0), heads, v});
  std::vector<uint16_t> token(static_cast<size_t>(latent + rope));
  for (const int64_t s : seqs) {
    const int64_t r0 = layout.seq_begin[s], queries = layout.seq_begin[s + 1] - r0, keys = layout.start[s] + queries;
    // Every key's latent and roped key as the cache holds them.
    Tensor latents = Tensor::empty(DType::kBF16, {keys, latent});
    Tensor k_rope = Tensor::empty(DType::kBF16, {keys, rope});
    for (int64_t t = 0; t < keys; ++t) {
      cache.read_token_bf16(layout.block_table[s][t / mla::kBlockTokens], t % mla::kBlockTokens, token.data());
      std::copy_n(token.data(), latent, reinterpret_cast<uint16_t*>(latents.mutable_data<bf16>()) + t * latent);
      std::copy_n(token.data() + latent, rope, reinterpret_cast<uint16_t*>(k_rope.mutable_data<bf16>()) + t * rope);
    }
    const Tensor q_seq = q.slice(0, r0, r0 + queries);
    Tensor out_seq = values3.slice(0, r0, r0 + queries);
    const int64_t slice_heads = heads_per_slice(c, keys, expanded_kv_bytes_);
    for (int64_t h0 = 0; h0 < heads; h0 += slice_heads) {
      const int64_t h1 = std::min(heads, h0 + slice_heads);
      Tensor kv = Tensor::empty(DType::kBF16, {keys, (h1 - h0) * per_head});
      {
        trace::Span g("expand_keys", "model");
        gemm::gemm_bf16_nt(latents, kv_b_.rows(h0 * per_head, h1 * per_head), kv);
      }
      Tensor out = out_seq.slice(1, h0, h1);
      Tensor no_lse;
      mla::mla_prefill(q_seq.slice(1, h0, h1), kv.reshape({keys, h1 - h0, per_head}), k_rope,
                       static_cast<float>(c.softmax_scale()), /*causal=*/true, out, no_lse);
    }
    round_activations(precision_, values.mutable_data<float>() + r0 * heads * v, queries * heads * v);
  }
}

Tensor Attention::forward(const Tensor& x, const BatchLayout& layout, mla::PagedKvCache& cache) const {
  trace::Span span("attention", "model");
  span.arg("rows", layout.rows());
  const Tensor q = project_queries(x, layout);
  write_cache(x, layout, cache);
  if (precision_ == Precision::kExact) return w_->o.forward(attend_absorbed(q, layout, cache));

  const ModelConfig& c = *config_;
  std::vector<int64_t> expanded, absorbed;
  for (int64_t s = 0; s < layout.sequences(); ++s) {
    const int64_t queries = layout.seq_begin[s + 1] - layout.seq_begin[s];
    const AttentionForm form = forced_form_ ? *forced_form_ : cheaper_attention_form(c, queries, layout.start[s] + queries);
    (form == AttentionForm::kExpanded ? expanded : absorbed).push_back(s);
  }
  if (expanded.empty()) return w_->o.forward(attend_absorbed(q, layout, cache));
  Tensor values = Tensor::empty(DType::kF32, {layout.rows(), c.num_attention_heads * c.v_head_dim});
  attend_expanded(q, layout, expanded, cache, values);
  if (!absorbed.empty()) {
    // The absorbed sequences as a batch of their own, their value rows put back in place.
    std::vector<int64_t> rows;
    const BatchLayout sub = select_sequences(layout, absorbed, rows);
    const int64_t width = q.size(1) * q.size(2), n = static_cast<int64_t>(rows.size());
    Tensor q_sub = Tensor::empty(DType::kF32, {n, q.size(1), q.size(2)});
    for (int64_t i = 0; i < n; ++i)
      std::copy_n(q.data<float>() + rows[i] * width, width, q_sub.mutable_data<float>() + i * width);
    const Tensor v_sub = attend_absorbed(q_sub, sub, cache);
    const int64_t vw = values.size(1);
    for (int64_t i = 0; i < n; ++i)
      std::copy_n(v_sub.data<float>() + i * vw, vw, values.mutable_data<float>() + rows[i] * vw);
  }
  return w_->o.forward(values);
}

}  // namespace cachalot::model
