// The part all GEMM entry points share (internal to src/gemm): a list of problems, each some
// rows of BF16-decoded activations against one group of packed weights, cut into tiles and run
// on the thread pool with the micro-kernel of the active ISA.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "gemm/packed_weights.h"

namespace cachalot::gemm::detail {

struct Problem {
  int64_t m = 0;                 // rows
  const uint16_t* a = nullptr;   // BF16, k-block-major: row r, block kb at a + r * 128 + kb * a_kb_stride,
  int64_t a_kb_stride = 0;       //   zero-padded past K (see gemm.cc: decoded activations)
  const float* sa = nullptr;     // [m][kblocks] scales, ldsa apart; null: 1
  int64_t ldsa = 0;
  int64_t group = 0;             // which group of the packed weights
  void* d = nullptr;             // output rows, ldd elements apart
  DType d_dtype = DType::kF32;
  int64_t ldd = 0;
  const float* c = nullptr;      // optional FP32 addend rows, ldc apart
  int64_t ldc = 0;
};

void run(const PackedWeights& b, const std::vector<Problem>& problems);

}  // namespace cachalot::gemm::detail
