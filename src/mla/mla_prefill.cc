#include "mla/mla_prefill.h"

#include <algorithm>
#include <cmath>
#include <cstring>
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
using pack::kChunkTokens;
constexpr int64_t kQueryBlock = 96;  // query rows per task: 16 of the tile kernel's 6-row tiles
using pack::kPanelDwords;

struct Shape {
  int64_t queries, heads, keys, dn, dr, dv;
  int64_t key_dim() const { return dn + dr; }
  int64_t kq_blocks() const { return (key_dim() + 127) / 128; }
  int64_t kq_pad() const { return kq_blocks() * 128; }
  int64_t v_panels() const { return dv / 16; }
  int64_t kt_chunk_dwords() const { return 8 * kq_blocks() * kPanelDwords; }  // 8 panels of 16 keys
  int64_t vt_chunk_dwords() const { return v_panels() * kPanelDwords; }
};

bool float_or_bf16(const Tensor& t) { return t.dtype() == DType::kF32 || t.dtype() == DType::kBF16; }

Shape check_arguments(const Tensor& q, const Tensor& kv, const Tensor& k_rope, bool causal, const Tensor& out,
                      const Tensor& lse) {
  CACHALOT_CHECK_ARG(q.dim() == 3 && float_or_bf16(q) && q.stride(2) == 1,
                     "mla_prefill: q must be F32 or BF16 [queries, heads, dn + dr] with a contiguous last dimension, got {}",
                     q.description());
  CACHALOT_CHECK_ARG(out.dim() == 3 && out.dtype() == DType::kF32 && out.stride(2) == 1 && out.writable(),
                     "mla_prefill: out must be writable F32 [queries, heads, dv] with a contiguous last dimension, got {}",
                     out.description());
  Shape s{q.size(0), q.size(1), kv.dim() == 3 ? kv.size(0) : 0, 0, k_rope.dim() == 2 ? k_rope.size(1) : 0, out.size(2)};
  s.dn = q.size(2) - s.dr;
  CACHALOT_CHECK_ARG(out.size(0) == s.queries && out.size(1) == s.heads,
                     "mla_prefill: out {} does not match q {}", out.description(), q.description());
  CACHALOT_CHECK_ARG(s.dv > 0 && s.dv % 16 == 0, "mla_prefill: dv must be a positive multiple of 16, got {}", s.dv);
  CACHALOT_CHECK_ARG(kv.dim() == 3 && float_or_bf16(kv) && kv.stride(2) == 1 && kv.size(1) == s.heads &&
                         kv.size(2) == s.dn + s.dv,
                     "mla_prefill: kv must be F32 or BF16 [keys, {}, {} + {}] (nope keys, values) with a contiguous last "
                     "dimension, got {}",
                     s.heads, s.dn, s.dv, kv.description());
  CACHALOT_CHECK_ARG(k_rope.dim() == 2 && float_or_bf16(k_rope) && k_rope.stride(1) == 1 && k_rope.size(0) == s.keys,
                     "mla_prefill: k_rope must be F32 or BF16 [{}, dr] with a contiguous last dimension, got {}", s.keys,
                     k_rope.description());
  CACHALOT_CHECK_ARG(s.dn > 0 && s.key_dim() % 2 == 0,
                     "mla_prefill: q's last dimension {} must be dn + dr with dn > 0 and an even total (dr = {})",
                     q.size(2), s.dr);
  CACHALOT_CHECK_ARG(!causal || s.queries <= s.keys,
                     "mla_prefill: causal attention of {} queries needs them among the keys, got {} keys", s.queries,
                     s.keys);
  if (lse.defined() && lse.numel() > 0)
    CACHALOT_CHECK_ARG(lse.dtype() == DType::kF32 && lse.shape() == (Dims{s.heads, s.queries}) && lse.is_contiguous() &&
                           lse.writable(),
                       "mla_prefill: lse must be writable contiguous F32 [{}, {}], got {}", s.heads, s.queries,
                       lse.description());
  return s;
}

// Element (i, j, 0) of a tensor whose last dimension is contiguous.
const void* row_at(const Tensor& t, int64_t i, int64_t j) {
  const int64_t offset = i * t.stride(0) + (t.dim() == 3 ? j * t.stride(1) : 0);
  return static_cast<const char*>(t.raw_data()) + offset * static_cast<int64_t>(t.element_size());
}

// n values of an F32 or BF16 row as BF16 (F32 rounded to nearest even).
void row_to_bf16(const Tensor& t, const void* row, int64_t n, uint16_t* dst) {
  if (t.dtype() == DType::kBF16)
    std::memcpy(dst, row, static_cast<size_t>(n) * 2);
  else
    convert(static_cast<const float*>(row), reinterpret_cast<bf16*>(dst), static_cast<size_t>(n));
}

// Packs head h's keys and values of one 128-key chunk into the tile kernel's panel layouts
// (cpu/chunk_pack.h): K^T panels over the dn + dr key values, V panels over dv.
void pack_chunk(const Shape& s, const Tensor& kv, const Tensor& k_rope, int64_t h, int64_t c, uint32_t* kt,
                uint32_t* vt, std::vector<uint16_t>& stage) {
  const int64_t kd = s.key_dim(), t0 = c * kChunkTokens, n = std::min(kChunkTokens, s.keys - t0);
  stage.resize(static_cast<size_t>(kChunkTokens * std::max(kd, s.dv)));
  uint16_t* rows = stage.data();
  for (int64_t i = 0; i < n; ++i) {
    row_to_bf16(kv, row_at(kv, t0 + i, h), s.dn, rows + i * kd);
    row_to_bf16(k_rope, row_at(k_rope, t0 + i, 0), s.dr, rows + i * kd + s.dn);
  }
  std::fill(rows + n * kd, rows + kChunkTokens * kd, uint16_t{0});  // keys past the end are zero
  // The pairs past kd in each panel's last block are not written by pack_kt: zero them.
  const int64_t kq_blocks = s.kq_blocks();
  if (kd < s.kq_pad())
    for (int64_t p = 0; p < 8; ++p) std::fill_n(kt + (p * kq_blocks + kq_blocks - 1) * kPanelDwords, kPanelDwords, 0u);
  pack::pack_kt(rows, kd, kq_blocks, kt);
  for (int64_t i = 0; i < n; ++i) row_to_bf16(kv, static_cast<const char*>(row_at(kv, t0 + i, h)) + s.dn * kv.element_size(), s.dv, rows + i * s.dv);
  std::fill(rows + n * s.dv, rows + kChunkTokens * s.dv, uint16_t{0});
  pack::pack_v(rows, s.dv, s.dv, vt);
}

struct Scratch {
  std::vector<uint16_t> q;       // [rows][kq_pad] BF16 queries, zero past key_dim
  std::vector<float> scores;     // [rows][128]
  std::vector<uint16_t> p;       // [rows][128] BF16 probabilities
  std::vector<float> o;          // [rows][dv] accumulators
  std::vector<float> m, l;
  std::vector<int32_t> valid;
};

// One task: queries [q0, q1) of head h against every key they see.
void attend_block(const Shape& s, const Tensor& q, int64_t h, int64_t q0, int64_t q1, const uint32_t* kt,
                  const uint32_t* vt, float scale, bool causal, Tensor& out, Tensor& lse, Scratch& w) {
  const int64_t rows = q1 - q0, kd = s.key_dim(), kq_pad = s.kq_pad(), dv = s.dv;
  w.q.resize(static_cast<size_t>(rows * kq_pad));
  for (int64_t r = 0; r < rows; ++r) {
    row_to_bf16(q, row_at(q, q0 + r, h), kd, w.q.data() + r * kq_pad);
    std::fill_n(w.q.data() + r * kq_pad + kd, kq_pad - kd, uint16_t{0});
  }
  w.scores.resize(static_cast<size_t>(rows * kChunkTokens));
  w.p.resize(static_cast<size_t>(rows * kChunkTokens));
  w.o.assign(static_cast<size_t>(rows * dv), 0.0f);
  w.m.assign(static_cast<size_t>(rows), kNegInf);
  w.l.assign(static_cast<size_t>(rows), 0.0f);
  w.valid.resize(static_cast<size_t>(rows));

  const int64_t first_pos = s.keys - s.queries + q0;  // position of the block's first query
  const int64_t key_end = causal ? first_pos + rows : s.keys;
  for (int64_t t0 = 0; t0 < key_end; t0 += kChunkTokens) {
    const int64_t c = t0 / kChunkTokens, n = std::min(kChunkTokens, s.keys - t0);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t visible = causal ? first_pos + r + 1 - t0 : n;
      w.valid[static_cast<size_t>(r)] = static_cast<int32_t>(std::clamp<int64_t>(visible, 0, n));
    }
    chunk::Step step;
    step.rows = rows;
    step.q = w.q.data(), step.key_dim = kd;
    step.kt = kt + c * s.kt_chunk_dwords(), step.vt = vt + c * s.vt_chunk_dwords();
    step.v_panels = s.v_panels();
    step.valid = w.valid.data(), step.scale = scale;
    step.scores = w.scores.data(), step.p = w.p.data();
    step.m = w.m.data(), step.l = w.l.data();
    step.out = w.o.data(), step.ld_out = dv;
    chunk::attend(step);
  }

  for (int64_t r = 0; r < rows; ++r) {
    float* dst = out.mutable_data<float>() + (q0 + r) * out.stride(0) + h * out.stride(1);
    const float l = w.l[static_cast<size_t>(r)];
    const float inv = l == 0.0f ? 0.0f : 1.0f / l;
    for (int64_t j = 0; j < dv; ++j) dst[j] = w.o[static_cast<size_t>(r * dv + j)] * inv;
    if (lse.defined() && lse.numel() > 0)
      lse.mutable_data<float>()[h * s.queries + q0 + r] = l == 0.0f ? kNegInf : w.m[static_cast<size_t>(r)] + std::log(l);
  }
}

}  // namespace

void mla_prefill(const Tensor& q, const Tensor& kv, const Tensor& k_rope, float softmax_scale, bool causal,
                 Tensor& out, Tensor& lse) {
  const Shape s = check_arguments(q, kv, k_rope, causal, out, lse);
  if (s.queries == 0 || s.heads == 0) return;
  trace::Span span("mla_prefill", "mla");
  span.arg("queries", s.queries).arg("keys", s.keys).arg("heads", s.heads);

  // Tasks: a head and a range of its query blocks. Each task packs the keys its queries see
  // into its thread's buffers (a head's keys stay in that core's cache while its blocks run), so
  // a head is split into as few ranges as keep every thread busy: with many heads each is
  // packed once.
  const int64_t blocks = (s.queries + kQueryBlock - 1) / kQueryBlock;
  const int64_t threads = ThreadPool::global().num_threads();
  const int64_t ranges = std::clamp<int64_t>((4 * threads + s.heads - 1) / s.heads, 1, blocks);
  const int64_t blocks_per_range = (blocks + ranges - 1) / ranges;
  ThreadPool::global().parallel_for(0, s.heads * ranges, [&](int64_t i0, int64_t i1, int) {
    thread_local Scratch scratch;
    thread_local std::vector<uint32_t> kt, vt;
    thread_local std::vector<uint16_t> stage;
    for (int64_t i = i0; i < i1; ++i) {
      // The last ranges of every head first: under causal masking they see the most keys.
      const int64_t h = i % s.heads, range = ranges - 1 - i / s.heads;
      const int64_t b0 = range * blocks_per_range, b1 = std::min(blocks, b0 + blocks_per_range);
      if (b0 >= b1) continue;
      const int64_t q_end = std::min(s.queries, b1 * kQueryBlock);
      const int64_t key_end = causal ? s.keys - s.queries + q_end : s.keys;
      const int64_t chunks = (key_end + kChunkTokens - 1) / kChunkTokens;
      kt.resize(static_cast<size_t>(std::max<int64_t>(1, chunks) * s.kt_chunk_dwords()));
      vt.resize(static_cast<size_t>(std::max<int64_t>(1, chunks) * s.vt_chunk_dwords()));
      for (int64_t c = 0; c < chunks; ++c)
        pack_chunk(s, kv, k_rope, h, c, kt.data() + c * s.kt_chunk_dwords(), vt.data() + c * s.vt_chunk_dwords(), stage);
      for (int64_t b = b1 - 1; b >= b0; --b)
        attend_block(s, q, h, b * kQueryBlock, std::min(s.queries, (b + 1) * kQueryBlock), kt.data(), vt.data(),
                     softmax_scale, causal, out, lse, scratch);
    }
  }, Schedule::kDynamic, 1);
}

}  // namespace cachalot::mla
