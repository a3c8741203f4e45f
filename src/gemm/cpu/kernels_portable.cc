// Portable micro-kernel: plain C++ in the contract's order (tile_kernel.h). The inner loops run over
// the 16 lanes of a panel, which the compiler may vectorise without reordering any lane's sums.
#include "core/float_formats.h"
#include "gemm/tile_kernel.h"
#include "gemm/packed_weights.h"

namespace cachalot::gemm::kernels::portable {
namespace {

inline float bf16_bits_to_float(uint16_t bits) { return bf16_to_float(bf16{bits}); }

// One tile of t.rows rows (t.row_tiles is not read).
void run_one_tile(const Tile& t) {
  const float* table = e4m3_to_float_table();
  constexpr int kLanes = kPanelRows;
  for (int64_t kb = 0; kb < t.kblocks; ++kb) {
    float p[kMaxRows][kMaxPanels][kLanes] = {};
    // This k-block's activations as FP32, rows past t.rows zero: the loops below then touch no
    // activation memory outside the tile. (GCC 12 -O3 was seen loading row 5 of a 4-row tile
    // when the loop read t.a directly.)
    float a_block[kMaxRows][128] = {};
    for (int r = 0; r < t.rows; ++r) {
      const uint16_t* a = t.a + r * t.lda + kb * t.a_kb_stride;
      for (int c = 0; c < 128; ++c) a_block[r][c] = bf16_bits_to_float(a[c]);
    }
    const int pairs = kb == t.kblocks - 1 ? t.last_kblock_pairs : kPairsPerBlock;
    for (int j = 0; j < pairs; ++j) {
      for (int pn = 0; pn < t.panels; ++pn) {
        float b0[kLanes], b1[kLanes];
        const uint8_t* block = t.b[pn] + kb * t.b_stride;
        for (int lane = 0; lane < kLanes; ++lane) {
          const int64_t at = (j * kLanes + lane) * 2;
          if (t.b_fp8) {
            b0[lane] = table[block[at]];
            b1[lane] = table[block[at + 1]];
          } else {
            const auto* words = reinterpret_cast<const uint16_t*>(block);
            b0[lane] = bf16_bits_to_float(words[at]);
            b1[lane] = bf16_bits_to_float(words[at + 1]);
          }
        }
        for (int r = 0; r < t.rows; ++r) {
          const float a0 = a_block[r][2 * j], a1 = a_block[r][2 * j + 1];
          for (int lane = 0; lane < kLanes; ++lane) {
            p[r][pn][lane] += a1 * b1[lane];
            p[r][pn][lane] += a0 * b0[lane];
          }
        }
      }
    }
    for (int r = 0; r < t.rows; ++r) {
      const float sa = t.sa ? t.sa[r * t.ldsa + kb] : 1.0f;
      for (int pn = 0; pn < t.panels; ++pn) {
        const float s = sa * (t.sb[pn] ? t.sb[pn][kb] : 1.0f);
        float* out = t.out + r * t.ldo + pn * kLanes;
        const bool store = t.store_first && kb == 0;
        if (t.out_bf16 && kb == t.kblocks - 1) {
          uint16_t* final_out = t.out_bf16 + r * t.ldo_bf16 + pn * kLanes;
          for (int lane = 0; lane < kLanes; ++lane)
            final_out[lane] = float_to_bf16(store ? s * p[r][pn][lane] : out[lane] + s * p[r][pn][lane]).bits;
        } else if (store) {
          for (int lane = 0; lane < kLanes; ++lane) out[lane] = s * p[r][pn][lane];
        } else {
          for (int lane = 0; lane < kLanes; ++lane) out[lane] += s * p[r][pn][lane];
        }
      }
    }
  }
}

}  // namespace

void run_tile(const Tile& t) {
  for (int64_t tile = 0; tile < t.row_tiles; ++tile) {
    Tile one = t;
    one.a += tile * t.rows * t.lda;
    if (one.sa) one.sa += tile * t.rows * t.ldsa;
    one.out += tile * t.rows * t.ldo;
    if (one.out_bf16) one.out_bf16 += tile * t.rows * t.ldo_bf16;
    run_one_tile(one);
  }
}

}  // namespace cachalot::gemm::kernels::portable
