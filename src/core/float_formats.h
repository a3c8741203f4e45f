// Scalar encodings of the small floating-point formats: BF16, FP16 (IEEE binary16), FP8 E4M3
// ("fn": no infinities, max 448, NaN 0x7F/0xFF) and FP8 E5M2 (IEEE-like, max 57344, has inf).
//
// Encoding from float32 rounds to nearest, ties to even. Out-of-range handling:
//   BF16, FP16  overflow -> +-inf (IEEE semantics, as vcvtneps2bf16 and vcvtps2ph do)
//   E4M3        |x| > 448 and +-inf -> +-448 (saturation: E4M3fn has no inf)
//   E5M2        |x| > 57344 -> +-57344 (saturation); +-inf stays inf (it is representable)
//   NaN         -> the format's NaN with the input's sign (BF16 keeps the payload's top bits)
// Decoding to float32 is exact for every code.
#pragma once

#include <bit>
#include <cstdint>

namespace cachalot {

struct bf16 {
  uint16_t bits = 0;
};
struct fp16 {
  uint16_t bits = 0;
};
struct fp8_e4m3 {
  uint8_t bits = 0;
};
struct fp8_e5m2 {
  uint8_t bits = 0;
};

inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr float kFp8E5M2Max = 57344.0f;

inline float bf16_to_float(bf16 v) { return std::bit_cast<float>(uint32_t{v.bits} << 16); }

inline bf16 float_to_bf16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x0040u)};
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);  // ties to even
  return bf16{static_cast<uint16_t>((u + rounding) >> 16)};
}

// BF16 codes of the 128 E4M3 magnitudes (code & 0x7F), built once: the register table the
// vectorised E4M3 -> BF16 decoders permute through. Every E4M3 value is exact in BF16.
const uint16_t* e4m3_magnitude_to_bf16_table();
// float32 value of each of the 256 E4M3 codes (NaN for 0x7F/0xFF), built once: portable decoding.
const float* e4m3_to_float_table();
// The same codes split into bytes: [0, 128) the low bytes, [128, 256) the high bytes (the
// byte-permute form of the table).
const uint8_t* e4m3_magnitude_to_bf16_bytes();

float fp16_to_float(fp16 v);
fp16 float_to_fp16(float x);
float fp8_e4m3_to_float(fp8_e4m3 v);
fp8_e4m3 float_to_fp8_e4m3(float x);
float fp8_e5m2_to_float(fp8_e5m2 v);
fp8_e5m2 float_to_fp8_e5m2(float x);

}  // namespace cachalot
