#include "gemm/gemm.h"

#include <algorithm>
#include <cstring>

#include "core/convert.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "gemm/gemm_driver.h"
#include "gemm/quantize.h"

namespace cachalot::gemm {
namespace {

using detail::Problem;

// Activations decoded to BF16 in the kernels' layout: k-block-major ([kb][row][128]), zero past
// K, so a row tile's slice of one k-block is contiguous and a sweep over rows is sequential.
struct DecodedA {
  Tensor storage;  // BF16 [kblocks, rows, 128]
  const uint16_t* data = nullptr;
  int64_t kb_stride = 0;  // rows * 128
};

// Row r of `rows` (element type T, K values each) -> BF16 into the k-block-major buffer.
template <typename Convert>
DecodedA decode_rows(int64_t rows, int64_t k, int64_t kblocks, Convert convert_row) {
  DecodedA out;
  out.storage = Tensor::empty(DType::kBF16, {kblocks, rows, kBlock});
  auto* dst = out.storage.mutable_data<bf16>();
  out.kb_stride = rows * kBlock;
  ThreadPool::global().parallel_for(0, rows, [&](int64_t r0, int64_t r1, int) {
    std::vector<bf16> row(static_cast<size_t>(kblocks * kBlock));
    for (int64_t r = r0; r < r1; ++r) {
      convert_row(r, row.data());
      std::fill(row.begin() + k, row.end(), bf16{});
      for (int64_t kb = 0; kb < kblocks; ++kb)
        std::memcpy(dst + kb * out.kb_stride + r * kBlock, row.data() + kb * kBlock, kBlock * sizeof(bf16));
    }
  });
  out.data = reinterpret_cast<const uint16_t*>(dst);
  return out;
}

DecodedA decode_fp8_rows(const Tensor& a2, int64_t kblocks) {
  const auto* src = a2.data<fp8_e4m3>();
  const int64_t k = a2.size(1), ld = a2.stride(0);
  return decode_rows(a2.size(0), k, kblocks,
                               [&](int64_t r, bf16* row) { convert(src + r * ld, row, static_cast<size_t>(k)); });
}

// The valid rows of a masked layout [G, M_max, K], packed in group order: group g's rows are
// decoded rows first[g] .. first[g] + masked_m[g], from rows source[.] of the [G * M_max, K] view.
// Only these are decoded: a low-latency EP receive has M_max = ranks x max tokens per expert and
// a few valid rows in each, so decoding all of it cost far more than the GEMM.
struct MaskedRows {
  std::vector<int64_t> first, source;
};
MaskedRows masked_rows(const int32_t* counts, int64_t groups, int64_t m_max) {
  MaskedRows m;
  m.first.assign(static_cast<size_t>(groups) + 1, 0);
  for (int64_t g = 0; g < groups; ++g) {
    m.first[g + 1] = m.first[g] + counts[g];
    for (int64_t i = 0; i < counts[g]; ++i) m.source.push_back(g * m_max + i);
  }
  return m;
}

void check(bool ok, const char* op, const std::string& what) {
  if (!ok) raise(ErrorKind::kInvalidArgument, "{}: {}", op, what);
}

void check_output(const char* op, Tensor& d, const Dims& want, const Tensor* c) {
  check(d.dtype() == DType::kF32 || d.dtype() == DType::kBF16, op,
        fmt::format("d must be F32 or BF16, got {}", d.description()));
  check(d.shape() == want, op, fmt::format("d must be {}, got {}", want.to_string(), d.description()));
  check(d.stride(-1) == 1 && d.writable(), op, "d must be writable with contiguous rows");
  check(d.dim() < 3 || d.stride(0) == d.size(1) * d.stride(1), op, "d groups must be evenly strided");
  if (c != nullptr) {
    check(c->dtype() == DType::kF32 && c->shape() == want && c->stride(-1) == 1, op,
          fmt::format("c must be F32 {} with contiguous rows, got {}", want.to_string(), c->description()));
    check(c->dim() < 3 || c->stride(0) == c->size(1) * c->stride(1), op, "c groups must be evenly strided");
  }
}

void check_fp8_inputs(const char* op, const Tensor& a, const Tensor& sa, const PackedWeights& b) {
  check(a.dtype() == DType::kF8E4M3, op, fmt::format("a must be F8_E4M3, got {}", a.description()));
  check(b.format() == PackedWeights::Format::kFp8, op, "b must be packed FP8 weights (pack_fp8_weights)");
  const int64_t k = a.size(-1);
  check(b.k() == k, op, fmt::format("a has K = {} but b has K = {}", k, b.k()));
  check(a.stride(-1) == 1, op, "a must have contiguous rows");
  Dims want_sa = a.shape();
  want_sa[a.dim() - 1] = ceil_div(k, kBlock);
  check(sa.dtype() == DType::kF32 && sa.shape() == want_sa && sa.is_contiguous(), op,
        fmt::format("sa must be contiguous F32 {} for a {}, got {}", want_sa.to_string(), a.description(),
                    sa.description()));
}

Problem make_problem(int64_t m, const DecodedA& a, int64_t a_row0, const float* sa, int64_t ldsa, int64_t group,
                     Tensor& d, int64_t d_offset, int64_t ldd, const Tensor* c, int64_t c_offset, int64_t ldc) {
  Problem p;
  p.m = m;
  p.a = a.data + a_row0 * kBlock;
  p.a_kb_stride = a.kb_stride;
  p.sa = sa;
  p.ldsa = ldsa;
  p.group = group;
  p.d_dtype = d.dtype();
  p.d = static_cast<char*>(d.mutable_raw_data()) + d_offset * static_cast<int64_t>(d.element_size());
  p.ldd = ldd;
  if (c != nullptr) {
    p.c = c->data<float>() + c_offset;
    p.ldc = ldc;
  }
  return p;
}

}  // namespace

void gemm_fp8_nt(const Tensor& a, const Tensor& sa, const PackedWeights& b, Tensor& d, const Tensor* c) {
  constexpr const char* op = "gemm_fp8_nt";
  check(a.dim() == 2, op, fmt::format("a must be [M, K], got {}", a.description()));
  check_fp8_inputs(op, a, sa, b);
  check(b.groups() == 1, op, fmt::format("b has {} groups; use a grouped GEMM", b.groups()));
  check_output(op, d, {a.size(0), b.n()}, c);
  const DecodedA decoded = decode_fp8_rows(a, b.kblocks());
  detail::run(b, {make_problem(a.size(0), decoded, 0, sa.data<float>(), b.kblocks(), 0, d, 0, d.stride(0), c, 0,
                               c ? c->stride(0) : 0)});
}

void gemm_fp8_nt(const Tensor& a, const Tensor& sa, const Tensor& b, const Tensor& sb, Tensor& d, const Tensor* c) {
  gemm_fp8_nt(a, sa, pack_fp8_weights(b, sb), d, c);
}

void gemm_fp8_grouped_contiguous(const Tensor& a, const Tensor& sa, const PackedWeights& b, const Tensor& m_indices,
                                 Tensor& d, const Tensor* c) {
  constexpr const char* op = "gemm_fp8_grouped_contiguous";
  check(a.dim() == 2, op, fmt::format("a must be [M, K], got {}", a.description()));
  check_fp8_inputs(op, a, sa, b);
  const int64_t m = a.size(0);
  check(m_indices.defined() && m_indices.dtype() == DType::kI32 && m_indices.shape() == Dims{m} &&
            m_indices.is_contiguous(),
        op, fmt::format("m_indices must be contiguous I32 [{}], got {}", m, m_indices.description()));
  check_output(op, d, {m, b.n()}, c);
  const int32_t* idx = m_indices.data<int32_t>();
  for (int64_t r = 0; r < m; ++r)
    check(idx[r] >= -1 && idx[r] < b.groups(), op,
          fmt::format("m_indices[{}] = {} is outside [-1, {})", r, idx[r], b.groups()));
  const DecodedA decoded = decode_fp8_rows(a, b.kblocks());
  std::vector<Problem> problems;
  for (int64_t r0 = 0; r0 < m;) {
    int64_t r1 = r0 + 1;
    while (r1 < m && idx[r1] == idx[r0]) ++r1;
    if (idx[r0] >= 0)
      problems.push_back(make_problem(r1 - r0, decoded, r0, sa.data<float>() + r0 * b.kblocks(), b.kblocks(), idx[r0],
                                      d, r0 * d.stride(0), d.stride(0), c, c ? r0 * c->stride(0) : 0,
                                      c ? c->stride(0) : 0));
    r0 = r1;
  }
  detail::run(b, problems);
}

void gemm_fp8_grouped_masked(const Tensor& a, const Tensor& sa, const PackedWeights& b, const Tensor& masked_m,
                             Tensor& d, const Tensor* c) {
  constexpr const char* op = "gemm_fp8_grouped_masked";
  check(a.dim() == 3, op, fmt::format("a must be [G, M_max, K], got {}", a.description()));
  check_fp8_inputs(op, a, sa, b);
  const int64_t groups = a.size(0), m_max = a.size(1);
  check(groups == b.groups(), op, fmt::format("a has {} groups but b has {}", groups, b.groups()));
  check(masked_m.defined() && masked_m.dtype() == DType::kI32 && masked_m.shape() == Dims{groups} &&
            masked_m.is_contiguous(),
        op, fmt::format("masked_m must be contiguous I32 [{}], got {}", groups, masked_m.description()));
  check(a.stride(0) == m_max * a.stride(1), op, "a groups must be evenly strided");
  check_output(op, d, {groups, m_max, b.n()}, c);
  const int32_t* counts = masked_m.data<int32_t>();
  for (int64_t g = 0; g < groups; ++g)
    check(counts[g] >= 0 && counts[g] <= m_max, op,
          fmt::format("masked_m[{}] = {} is outside [0, {}]", g, counts[g], m_max));
  const MaskedRows rows = masked_rows(counts, groups, m_max);
  const auto* src = a.data<fp8_e4m3>();
  const int64_t k = a.size(2), ld = a.stride(1);
  const DecodedA decoded = decode_rows(rows.first.back(), k, b.kblocks(), [&](int64_t r, bf16* row) {
    convert(src + rows.source[r] * ld, row, static_cast<size_t>(k));
  });
  std::vector<Problem> problems;
  for (int64_t g = 0; g < groups; ++g)
    problems.push_back(make_problem(counts[g], decoded, rows.first[g], sa.data<float>() + g * m_max * b.kblocks(),
                                    b.kblocks(), g, d, g * d.stride(0), d.stride(1), c, c ? g * c->stride(0) : 0,
                                    c ? c->stride(1) : 0));
  detail::run(b, problems);
}

void gemm_bf16_nt(const Tensor& a, const PackedWeights& b, Tensor& d, const Tensor* c) {
  constexpr const char* op = "gemm_bf16_nt";
  check(a.dim() == 2 && a.dtype() == DType::kBF16, op, fmt::format("a must be BF16 [M, K], got {}", a.description()));
  check(b.format() == PackedWeights::Format::kBf16 && b.groups() == 1, op,
        "b must be packed BF16 weights with one group (pack_bf16_weights)");
  check(a.size(1) == b.k(), op, fmt::format("a has K = {} but b has K = {}", a.size(1), b.k()));
  check(a.stride(1) == 1, op, "a must have contiguous rows");
  check_output(op, d, {a.size(0), b.n()}, c);
  const int64_t m = a.size(0), k = a.size(1), ld = a.stride(0);
  const auto* src = a.data<bf16>();
  const DecodedA padded = decode_rows(m, k, b.kblocks(), [&](int64_t r, bf16* row) {
    std::memcpy(row, src + r * ld, static_cast<size_t>(k) * sizeof(bf16));
  });
  detail::run(b, {make_problem(m, padded, 0, nullptr, 0, 0, d, 0, d.stride(0), c, 0, c ? c->stride(0) : 0)});
}

void gemm_bf16_grouped_masked(const Tensor& a, const PackedWeights& b, const Tensor& masked_m, Tensor& d,
                              const Tensor* c) {
  constexpr const char* op = "gemm_bf16_grouped_masked";
  check(a.dim() == 3 && a.dtype() == DType::kBF16 && a.is_contiguous(), op,
        fmt::format("a must be contiguous BF16 [G, M_max, K], got {}", a.description()));
  check(b.format() == PackedWeights::Format::kBf16, op, "b must be packed BF16 weights (pack_bf16_weights)");
  const int64_t groups = a.size(0), m_max = a.size(1), k = a.size(2);
  check(groups == b.groups(), op, fmt::format("a has {} groups but b has {}", groups, b.groups()));
  check(k == b.k(), op, fmt::format("a has K = {} but b has K = {}", k, b.k()));
  check(masked_m.defined() && masked_m.dtype() == DType::kI32 && masked_m.shape() == Dims{groups} &&
            masked_m.is_contiguous(),
        op, fmt::format("masked_m must be contiguous I32 [{}], got {}", groups, masked_m.description()));
  check_output(op, d, {groups, m_max, b.n()}, c);
  const int32_t* counts = masked_m.data<int32_t>();
  for (int64_t g = 0; g < groups; ++g)
    check(counts[g] >= 0 && counts[g] <= m_max, op,
          fmt::format("masked_m[{}] = {} is outside [0, {}]", g, counts[g], m_max));
  const MaskedRows rows = masked_rows(counts, groups, m_max);
  const auto* src = a.data<bf16>();
  const DecodedA padded = decode_rows(rows.first.back(), k, b.kblocks(), [&](int64_t r, bf16* row) {
    std::memcpy(row, src + rows.source[r] * k, static_cast<size_t>(k) * sizeof(bf16));
  });
  std::vector<Problem> problems;
  for (int64_t g = 0; g < groups; ++g)
    problems.push_back(make_problem(counts[g], padded, rows.first[g], nullptr, 0, g, d, g * d.stride(0), d.stride(1), c,
                                    c ? g * c->stride(0) : 0, c ? c->stride(1) : 0));
  detail::run(b, problems);
}

void gemm_bf16_nt(const Tensor& a, const Tensor& b, Tensor& d, const Tensor* c) {
  gemm_bf16_nt(a, pack_bf16_weights(b), d, c);
}

}  // namespace cachalot::gemm
