#include "gemm/tile_kernel.h"

#include "core/isa.h"

namespace cachalot::gemm::kernels {

void run_tile(const Tile& tile) {
  if (active_isa() == Isa::kAvx512) return avx512::run_tile(tile);
  portable::run_tile(tile);
}

}  // namespace cachalot::gemm::kernels
