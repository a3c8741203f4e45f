#include "gemm/tile_kernel.h"

#include "core/isa.h"

namespace cachalot::gemm::kernels {

void run_tile(const Tile& tile) {
  if (active_isa() == Isa::kAvx512) return avx512::run_tile(tile);
  portable::run_tile(tile);
}

void run_rows(Tile t, int64_t rows) {
  const int64_t full = rows / kMaxRows, rest = rows % kMaxRows;
  if (full > 0) {
    t.rows = kMaxRows;
    t.row_tiles = full;
    run_tile(t);
  }
  if (rest > 0) {
    t.a += full * kMaxRows * t.lda;
    if (t.sa) t.sa += full * kMaxRows * t.ldsa;
    t.out += full * kMaxRows * t.ldo;
    if (t.out_bf16) t.out_bf16 += full * kMaxRows * t.ldo_bf16;
    t.rows = static_cast<int>(rest);
    t.row_tiles = 1;
    run_tile(t);
  }
}

}  // namespace cachalot::gemm::kernels
