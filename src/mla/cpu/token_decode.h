// One cached token as the BF16 key row the MLA kernels multiply (internal to src/mla): BF16
// caches are copied; FP8 latents are dequantized (e4m3 x the group's scale, in FP32) and
// rounded to BF16, the rope part copied. The same values as decode_token followed by a BF16
// rounding, in fewer passes.
#pragma once

#include <cstdint>

#include "mla/paged_kv_cache.h"

namespace cachalot::mla::token {

// key: config.key_dim() BF16 values. F32 caches are rounded.
void to_bf16(const CacheConfig& config, const uint8_t* token, uint16_t* key);

namespace portable {
void to_bf16(const CacheConfig& config, const uint8_t* token, uint16_t* key);
}  // namespace portable
namespace avx512 {
// FP8 tokens only.
void fp8_to_bf16(const CacheConfig& config, const uint8_t* token, uint16_t* key);
}  // namespace avx512

}  // namespace cachalot::mla::token
