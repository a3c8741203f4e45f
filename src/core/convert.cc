#include "core/convert.h"

#include <array>

#include "core/isa.h"

namespace cachalot {
namespace convert_kernels::portable {
namespace {

// Decoding an 8-bit format is one table lookup per element.
template <typename Code, float (*Decode)(Code)>
const std::array<float, 256>& decode_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int code = 0; code < 256; ++code) t[code] = Decode(Code{static_cast<uint8_t>(code)});
    return t;
  }();
  return table;
}

template <typename Src, typename Dst, typename Fn>
void map(const Src* src, Dst* dst, size_t n, Fn fn) {
  for (size_t i = 0; i < n; ++i) dst[i] = fn(src[i]);
}

}  // namespace

void convert(const float* src, bf16* dst, size_t n) { map(src, dst, n, float_to_bf16); }
void convert(const bf16* src, float* dst, size_t n) { map(src, dst, n, bf16_to_float); }
void convert(const float* src, fp16* dst, size_t n) { map(src, dst, n, float_to_fp16); }
void convert(const fp16* src, float* dst, size_t n) { map(src, dst, n, fp16_to_float); }
void convert(const float* src, fp8_e4m3* dst, size_t n) { map(src, dst, n, float_to_fp8_e4m3); }
void convert(const fp8_e4m3* src, float* dst, size_t n) {
  const float* table = e4m3_to_float_table();
  map(src, dst, n, [&](fp8_e4m3 v) { return table[v.bits]; });
}
void convert(const fp8_e4m3* src, bf16* dst, size_t n) {
  // Every E4M3 value is exact in BF16 (3 mantissa bits, exponents within range).
  const float* table = e4m3_to_float_table();
  map(src, dst, n, [&](fp8_e4m3 v) { return float_to_bf16(table[v.bits]); });
}
void convert(const float* src, fp8_e5m2* dst, size_t n) { map(src, dst, n, float_to_fp8_e5m2); }
void convert(const fp8_e5m2* src, float* dst, size_t n) {
  const auto& table = decode_table<fp8_e5m2, fp8_e5m2_to_float>();
  map(src, dst, n, [&](fp8_e5m2 v) { return table[v.bits]; });
}

void convert_scaled(const float* src, float scale, fp8_e4m3* dst, size_t n) {
  map(src, dst, n, [scale](float v) { return float_to_fp8_e4m3(v * scale); });
}

}  // namespace convert_kernels::portable

#define CACHALOT_DISPATCH_CONVERT(Src, Dst)                                              \
  void convert(const Src* src, Dst* dst, size_t n) {                                    \
    if (active_isa() == Isa::kAvx512) return convert_kernels::avx512::convert(src, dst, n); \
    convert_kernels::portable::convert(src, dst, n);                                    \
  }
CACHALOT_DISPATCH_CONVERT(float, bf16)
CACHALOT_DISPATCH_CONVERT(bf16, float)
CACHALOT_DISPATCH_CONVERT(float, fp16)
CACHALOT_DISPATCH_CONVERT(fp16, float)
CACHALOT_DISPATCH_CONVERT(float, fp8_e4m3)
void convert_scaled(const float* src, float scale, fp8_e4m3* dst, size_t n) {
  if (active_isa() == Isa::kAvx512) return convert_kernels::avx512::convert_scaled(src, scale, dst, n);
  convert_kernels::portable::convert_scaled(src, scale, dst, n);
}
CACHALOT_DISPATCH_CONVERT(fp8_e4m3, float)
CACHALOT_DISPATCH_CONVERT(fp8_e4m3, bf16)
CACHALOT_DISPATCH_CONVERT(float, fp8_e5m2)
CACHALOT_DISPATCH_CONVERT(fp8_e5m2, float)
#undef CACHALOT_DISPATCH_CONVERT

}  // namespace cachalot
