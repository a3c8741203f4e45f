// AVX-512 BF16 micro-kernel: vdpbf16ps over 16-column panels, rows broadcast from A. FP8
// weights are decoded to BF16 in registers through a 128-entry table (vpermi2w), which is exact
// for every E4M3 value. Templates fix the tile shape so accumulators stay in registers.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

#include "core/float_formats.h"
#include "core/isa.h"
#include "gemm/tile_kernel.h"
#include "gemm/packed_weights.h"

CACHALOT_AVX512_BEGIN
#include "core/bf16_encode_avx512.h"

namespace cachalot::gemm::kernels::avx512 {
namespace {

struct DecodeTable {
  __m512i t0, t1, t2, t3;
};

inline DecodeTable load_decode_table() {
  const uint16_t* t = e4m3_magnitude_to_bf16_table();
  return {_mm512_loadu_si512(t), _mm512_loadu_si512(t + 32), _mm512_loadu_si512(t + 64),
          _mm512_loadu_si512(t + 96)};
}

// 32 FP8 codes -> 32 BF16 codes, in place order.
inline __m512i decode32(const DecodeTable& d, const uint8_t* p) {
  const __m512i x = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i low = _mm512_permutex2var_epi16(d.t0, x, d.t1);
  const __m512i high = _mm512_permutex2var_epi16(d.t2, x, d.t3);
  const __m512i magnitude = _mm512_mask_mov_epi16(low, _mm512_test_epi16_mask(x, _mm512_set1_epi16(0x40)), high);
  return _mm512_or_si512(magnitude, _mm512_slli_epi16(_mm512_and_si512(x, _mm512_set1_epi16(0x80)), 8));
}

// kFinalBf16: Tile::out_bf16 is set. A template parameter so the kernels without it keep their
// registers: the pointer and its stride live across the loops, and GCC then spilled the k-block
// loop's bookkeeping (128 x 4096 x 7168 lost 4%).
template <int kRows, int kPanels, bool kFp8, bool kFinalBf16>
void tile_kernel(const Tile& t) {
  // Everything the loops read from t, copied into locals: the stores into t.out could alias t's
  // fields as far as the compiler knows, and it would reload them (and spill the accumulators
  // around the reloads) in every k-block's epilogue.
  const int64_t lda = t.lda, a_kb_stride = t.a_kb_stride, ldsa = t.ldsa, ldo = t.ldo, b_stride = t.b_stride;
  const int64_t kblocks = t.kblocks;
  const int last_pairs = t.last_kblock_pairs;
  const bool prefetch_rows = t.prefetch_a;
  const bool store_first = t.store_first;
  const int64_t ldo_bf16 = kFinalBf16 ? t.ldo_bf16 : 0;
  const uint8_t* b_base[kPanels];
  const float* sb_base[kPanels];
  for (int pn = 0; pn < kPanels; ++pn) b_base[pn] = t.b[pn], sb_base[pn] = t.sb[pn];
  const uint8_t* const prefetch_b = t.prefetch_b;
  const int64_t pf_lines = t.prefetch_b ? (t.prefetch_b_bytes + 63) / 64 : 0;
  const int64_t pf_lines_per_tile = (pf_lines + t.row_tiles - 1) / t.row_tiles;
  DecodeTable table{};
  if constexpr (kFp8) table = load_decode_table();
  for (int64_t tile = 0; tile < t.row_tiles; ++tile) {
    const uint16_t* const a_base = t.a + tile * kRows * lda;
    const float* const sa_base = t.sa ? t.sa + tile * kRows * ldsa : nullptr;
    float* const out_base = t.out + tile * kRows * ldo;
    uint16_t* const out_bf16_base = kFinalBf16 ? t.out_bf16 + tile * kRows * ldo_bf16 : nullptr;
    // This tile's share of Tile::prefetch_b: lines [pf_first, pf_end).
    const int64_t pf_first = tile * pf_lines_per_tile;
    const int64_t pf_end = std::min(pf_lines, pf_first + pf_lines_per_tile);
    for (int64_t line = pf_first; line < pf_end; ++line)
      _mm_prefetch(reinterpret_cast<const char*>(prefetch_b + line * 64), _MM_HINT_T0);
    for (int64_t kb = 0; kb < kblocks; ++kb) {
      __m512 acc[kRows][kPanels];
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 4
        for (int pn = 0; pn < kPanels; ++pn) acc[r][pn] = _mm512_setzero_ps();
      const uint8_t* block[kPanels];
      for (int pn = 0; pn < kPanels; ++pn) block[pn] = b_base[pn] + kb * b_stride;
      const uint16_t* a = a_base + kb * a_kb_stride;
      const uint16_t* next_a = a + kRows * lda;
      const bool prefetch_a = prefetch_rows && tile + 1 < t.row_tiles;
      const int pairs = kb == kblocks - 1 ? last_pairs : kPairsPerBlock;
      // One step: a k-pair of every panel against every row.
      auto step = [&](int j) __attribute__((always_inline)) {
        __m512i b[kPanels];
#pragma GCC unroll 4
        for (int pn = 0; pn < kPanels; ++pn) {
          if constexpr (kFp8)
            b[pn] = decode32(table, block[pn] + j * 32);
          else
            b[pn] = _mm512_loadu_si512(block[pn] + j * 64);
        }
#pragma GCC unroll 8
        for (int r = 0; r < kRows; ++r) {
          int32_t pair;
          __builtin_memcpy(&pair, a + r * lda + 2 * j, sizeof(pair));
          const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 4
          for (int pn = 0; pn < kPanels; ++pn) acc[r][pn] = _mm512_dpbf16_ps(acc[r][pn], av, (__m512bh)b[pn]);
        }
      };
      // Steps in groups of 8, the prefetches issued once per group (tested per step, their
      // address arithmetic and the loop's bookkeeping cost ~5% of a large-M GEMM's kernel time).
      int j = 0;
      for (; j + 8 <= pairs; j += 8) {
        // Tile::prefetch_a: the next row tile's activations of this k-block, a row (256 bytes)
        // per group.
        if (prefetch_a && j < kRows * 8) {
          const char* row = reinterpret_cast<const char*>(next_a + (j / 8) * lda);
#pragma GCC unroll 4
          for (int line = 0; line < 4; ++line) _mm_prefetch(row + line * 64, _MM_HINT_T0);
        }
        // Streaming FP8 from DRAM: fetch the group's bytes of the next k-block (8 pairs x 32).
        if constexpr (kFp8)
#pragma GCC unroll 4
          for (int pn = 0; pn < kPanels; ++pn)
#pragma GCC unroll 4
            for (int line = 0; line < 4; ++line)
              _mm_prefetch(reinterpret_cast<const char*>(block[pn] + b_stride + j * 32 + line * 64), _MM_HINT_T0);
#pragma GCC unroll 8
        for (int jj = 0; jj < 8; ++jj) step(j + jj);
      }
      for (; j < pairs; ++j) step(j);
      const bool store = store_first && kb == 0;
      const bool final_bf16 = kFinalBf16 && kb == kblocks - 1;
      float sb[kPanels];
#pragma GCC unroll 4
      for (int pn = 0; pn < kPanels; ++pn) sb[pn] = sb_base[pn] ? sb_base[pn][kb] : 1.0f;
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) {
        const float sa = sa_base ? sa_base[r * ldsa + kb] : 1.0f;
        float* out = out_base + r * ldo;
#pragma GCC unroll 4
        for (int pn = 0; pn < kPanels; ++pn) {
          const __m512 s = _mm512_set1_ps(sa * sb[pn]);
          const __m512 scaled = _mm512_mul_ps(s, acc[r][pn]);
          const __m512 sum = store ? scaled : _mm512_add_ps(_mm512_loadu_ps(out + pn * 16), scaled);
          if (final_bf16)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out_bf16_base + r * ldo_bf16 + pn * 16),
                                bf16_avx512::encode(sum));
          else
            _mm512_storeu_ps(out + pn * 16, sum);
        }
      }
    }
  }
}

using KernelFn = void (*)(const Tile&);

template <bool kFp8, bool kFinalBf16, int... kRows>
constexpr std::array<std::array<KernelFn, kMaxPanels>, kMaxRows> make_table(std::integer_sequence<int, kRows...>) {
  return {{{&tile_kernel<kRows + 1, 1, kFp8, kFinalBf16>, &tile_kernel<kRows + 1, 2, kFp8, kFinalBf16>,
            &tile_kernel<kRows + 1, 3, kFp8, kFinalBf16>, &tile_kernel<kRows + 1, 4, kFp8, kFinalBf16>}...}};
}

}  // namespace

void run_tile(const Tile& t) {
  using Rows = std::make_integer_sequence<int, kMaxRows>;
  static constexpr auto kBf16 = make_table<false, false>(Rows{});
  static constexpr auto kFp8 = make_table<true, false>(Rows{});
  static constexpr auto kBf16Final = make_table<false, true>(Rows{});
  static constexpr auto kFp8Final = make_table<true, true>(Rows{});
  const auto& table = t.out_bf16 ? (t.b_fp8 ? kFp8Final : kBf16Final) : (t.b_fp8 ? kFp8 : kBf16);
  table[t.rows - 1][t.panels - 1](t);
}

}  // namespace cachalot::gemm::kernels::avx512
CACHALOT_AVX512_END
