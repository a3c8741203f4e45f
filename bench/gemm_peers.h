// Peers for the GEMM benchmark, run on the same (dequantized) weights in the same process:
// oneDNN's BF16 matmul (its own prepacked weight layout, BF16 out) and OpenBLAS SGEMM.
#pragma once

#include <cstdint>
#include <memory>

namespace cachalot::bench {

class OneDnnBf16Matmul {
 public:
  // b: BF16 codes [N, K] (row-major, as our weights); the weights are reordered once here.
  OneDnnBf16Matmul(int64_t m, int64_t n, int64_t k, const uint16_t* b);
  ~OneDnnBf16Matmul();
  // a: BF16 [M, K], d: BF16 [M, N].
  void run(const uint16_t* a, uint16_t* d);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// C[M,N] = A[M,K] x B[N,K]^T in FP32 through cblas_sgemm.
void openblas_sgemm_nt(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c);

}  // namespace cachalot::bench
