// The BF16 dot-product tile kernel behind gemm.h, public because MLA decode runs its two
// small matrix products (Q K^T and P V) through it too.
//
// A kernel computes one tile: `rows` rows of A against `panels` packed 16-column panels of B,
// over k-blocks [0, kblocks), adding into an FP32 tile `out` [rows][panels * 16]:
//   for each kb:  p = sum over the block's 64 k-pairs j, in order, of
//                     p += a[2j+1] * b[2j+1];  p += a[2j] * b[2j]      (FP32, one rounding each)
//                 out += (sa[row][kb] * sb[panel][kb]) * p              (a product, then a sum)
// That order is vdpbf16ps's and is part of the contract: every ISA's kernel, and the scalar
// reference in the tests, give bit-identical tiles. Products of BF16 (and so of FP8) values
// are exact in FP32, so only the sums round.
#pragma once

#include <cstdint>

namespace cachalot::gemm::kernels {

inline constexpr int kMaxRows = 6;    // rows per tile
inline constexpr int kMaxPanels = 4;  // 16-column panels per tile (64 columns): one packed chunk

struct Tile {
  int rows = 0;                        // 1..kMaxRows
  int panels = 0;                      // 1..kMaxPanels
  int64_t kblocks = 0;
  const uint16_t* a = nullptr;         // BF16 activations: row r, block kb at a + r * lda + kb * a_kb_stride,
  int64_t lda = 0;                     //   128 values each, zero past K
  int64_t a_kb_stride = 0;
  const float* sa = nullptr;           // row r, block kb at sa[r * ldsa + kb]; null: scale 1
  int64_t ldsa = 0;
  bool b_fp8 = false;                  // B blocks are FP8 (decoded in registers) or BF16
  const uint8_t* b[kMaxPanels] = {};   // per panel: its block kb = 0
  int64_t b_stride = 0;                // bytes from one kb block of a panel to the next
  const float* sb[kMaxPanels] = {};    // per panel: scales over kb; null: scale 1
  float* out = nullptr;                // FP32 tile, row r at out + r * ldo
  int64_t ldo = 0;
  // Tiles of `rows` rows stacked down A, sa and out (tile i starts i * rows rows further), run
  // in one call: a GEMM's row tiles share their k-block of B, and a call per 6-row, 1-k-block
  // tile paid the call and its setup for only 64 steps of the inner loop.
  int64_t row_tiles = 1;
  // k-pairs of the last k-block that can be non-zero: the rest are zero in A or in B (padding
  // past K), so the kernels skip them. Skipped pairs would add products of zero, which leave the
  // FP32 sums as they are, so the results do not depend on it. (MLA's keys: 192 = 1.5 blocks.)
  int last_kblock_pairs = 64;
  // Prefetch each stacked tile's successor's rows of A while computing it (AVX-512 kernel): for
  // activations too large to stay in cache, which the hardware prefetcher alone left the kernel
  // waiting on (8192 x 4096 x 7168 ran at 0.53 TFLOPS, 0.73 with it). A small A loses ~3%.
  bool prefetch_a = false;
  // The tile's first k-block stores its scaled sums into `out` instead of adding them, so `out`
  // need not be zeroed first (a pass over the FP32 block and a load per element saved). Same
  // bits: 0 + x == x for every x the sums can produce (they are never -0).
  bool store_first = false;
  // Bytes to prefetch (from DRAM) while the call runs, spread over its stacked tiles a line every
  // few steps: the blocked GEMM path's next k-block of FP8 weights. Issued all at once between
  // calls they overflowed the miss buffers and stalled (~4% of a 128 x 32768 x 512 GEMM).
  const uint8_t* prefetch_b = nullptr;
  int64_t prefetch_b_bytes = 0;
  // When set, the last k-block writes the tile's final values rounded to BF16 (float_to_bf16)
  // here, row r at out_bf16 + r * ldo_bf16, all panels * 16 columns, and leaves `out` as it was:
  // a GEMM with BF16 output and no addend then needs no pass over its FP32 block (~8% of a
  // 128 x 32768 x 512 GEMM went to that pass).
  uint16_t* out_bf16 = nullptr;
  int64_t ldo_bf16 = 0;
};

// Runs the tile with the kernel of the active ISA (core/isa.h).
void run_tile(const Tile& tile);
// Runs `rows` rows of A (from t.a, t.sa, t.out; t.rows and t.row_tiles are set here) as
// stacked kMaxRows-row tiles and one shorter tile for the rest.
void run_rows(Tile t, int64_t rows);

namespace portable {
void run_tile(const Tile& tile);
}  // namespace portable
namespace avx512 {
void run_tile(const Tile& tile);
}  // namespace avx512

}  // namespace cachalot::gemm::kernels
