// The MLA KV cache: per layer and token, the normalised compressed latent (kv_lora_rank values,
// 512 in DeepSeek-V3) followed by the roped shared key (qk_rope_head_dim, 64), in blocks of 64
// tokens addressed through per-request block tables. At decode time the latent is both the key's
// first part and the value (V = the first latent_dim values of K), so one token is all a query
// needs.
//
// Token layouts:
//   BF16: [latent BF16 x latent_dim][rope BF16 x rope_dim]                  (1152 bytes for 512+64)
//   FP8:  [latent E4M3 x latent_dim][FP32 scale per 128 latent values][rope BF16 x rope_dim]
//         (656 bytes for 512+64, FlashMLA's FP8 layout): latent value = e4m3 * scale, each
//         128-value group quantized as activations are (gemm::quantize_group: scale = amax / 448,
//         1e-4 floor), the rope key kept in BF16.
//   F32:  [latent F32 x latent_dim][rope F32 x rope_dim]                   (exact mode)
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace cachalot::mla {

inline constexpr int64_t kBlockTokens = 64;

// kF32 keeps full precision (the model's exact numerics mode); kernels round it to BF16 as they
// do FP32 queries.
enum class KvFormat { kBf16, kFp8, kF32 };

struct CacheConfig {
  int64_t latent_dim = 512;
  int64_t rope_dim = 64;
  KvFormat format = KvFormat::kBf16;

  int64_t key_dim() const { return latent_dim + rope_dim; }
  // The decode kernels work on 16-dim panels of the latent and on pairs of the key.
  int64_t scale_groups() const { return (latent_dim + 127) / 128; }
  int64_t token_bytes() const {
    if (format == KvFormat::kF32) return key_dim() * 4;
    return format == KvFormat::kBf16 ? key_dim() * 2 : latent_dim + scale_groups() * 4 + rope_dim * 2;
  }
};

class PagedKvCache {
 public:
  // num_blocks blocks of 64 tokens, zero-filled.
  PagedKvCache(CacheConfig config, int64_t num_blocks);

  const CacheConfig& config() const { return config_; }
  int64_t num_blocks() const { return num_blocks_; }
  const uint8_t* token(int64_t block, int64_t slot) const;
  uint8_t* mutable_token(int64_t block, int64_t slot);

  // Stores one token from FP32 latent[latent_dim] and rope[rope_dim] (rounded to the format).
  void write_token(int64_t block, int64_t slot, const float* latent, const float* rope);
  // Reads one token back as FP32 key[latent_dim + rope_dim] (exactly what the kernels see).
  void read_token(int64_t block, int64_t slot, float* key) const;
  // The same token as the BF16 row the kernels multiply (read_token's values rounded to BF16).
  void read_token_bf16(int64_t block, int64_t slot, uint16_t* key) const;
  // Fills a whole token's bytes (tests poison unused slots with NaN to catch stray reads).
  void fill_token(int64_t block, int64_t slot, float value);

 private:
  CacheConfig config_;
  int64_t num_blocks_;
  Tensor storage_;  // U8 [num_blocks, 64, token_bytes]
};

// Decodes one stored token to FP32 (shared by read_token and the portable kernel).
void decode_token(const CacheConfig& config, const uint8_t* token, float* key);

}  // namespace cachalot::mla
