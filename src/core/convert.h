// Bulk conversions between float32 and the small formats of float_formats.h. Each dispatches
// at run time (core/isa.h) to an AVX-512 kernel or a portable loop; both produce exactly the
// codes of the scalar functions (NaN payloads aside: any NaN in gives a NaN of the same sign).
#pragma once

#include <cstddef>

#include "core/float_formats.h"

namespace cachalot {

void convert(const float* src, bf16* dst, size_t n);
void convert(const bf16* src, float* dst, size_t n);
void convert(const float* src, fp16* dst, size_t n);
void convert(const fp16* src, float* dst, size_t n);
void convert(const float* src, fp8_e4m3* dst, size_t n);
void convert(const fp8_e4m3* src, float* dst, size_t n);
void convert(const fp8_e4m3* src, bf16* dst, size_t n);
void convert(const float* src, fp8_e5m2* dst, size_t n);
void convert(const fp8_e5m2* src, float* dst, size_t n);
// dst[i] = e4m3(src[i] * scale): the float32 product, then the conversion, as FP8 quantization
// encodes a group; one pass instead of a scaled copy and a convert().
void convert_scaled(const float* src, float scale, fp8_e4m3* dst, size_t n);

// The per-ISA implementations behind convert(); exposed so tests compare the two directly.
namespace convert_kernels {
#define CACHALOT_DECLARE_CONVERT(ns)                              \
  namespace ns {                                                  \
  void convert(const float* src, bf16* dst, size_t n);            \
  void convert(const bf16* src, float* dst, size_t n);            \
  void convert(const float* src, fp16* dst, size_t n);            \
  void convert(const fp16* src, float* dst, size_t n);            \
  void convert(const float* src, fp8_e4m3* dst, size_t n);        \
  void convert(const fp8_e4m3* src, float* dst, size_t n);        \
  void convert(const fp8_e4m3* src, bf16* dst, size_t n);         \
  void convert(const float* src, fp8_e5m2* dst, size_t n);        \
  void convert(const fp8_e5m2* src, float* dst, size_t n);        \
  void convert_scaled(const float* src, float scale, fp8_e4m3* dst, size_t n); \
  }
CACHALOT_DECLARE_CONVERT(portable)
CACHALOT_DECLARE_CONVERT(avx512)
#undef CACHALOT_DECLARE_CONVERT
}  // namespace convert_kernels

}  // namespace cachalot
