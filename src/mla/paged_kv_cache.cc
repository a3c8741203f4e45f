#include "mla/paged_kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/convert.h"
#include "core/error.h"
#include "gemm/quantize.h"
#include "mla/cpu/token_decode.h"

namespace cachalot::mla {

PagedKvCache::PagedKvCache(CacheConfig config, int64_t num_blocks) : config_(config), num_blocks_(num_blocks) {
  CACHALOT_CHECK_ARG(config.latent_dim > 0 && config.rope_dim >= 0 && config.latent_dim % 16 == 0 &&
                         config.rope_dim % 2 == 0,
                     "MLA cache: latent_dim ({}) must be a positive multiple of 16 and rope_dim ({}) even",
                     config.latent_dim, config.rope_dim);
  CACHALOT_CHECK_ARG(num_blocks >= 0, "MLA cache: negative block count {}", num_blocks);
  storage_ = Tensor::zeros(DType::kU8, {num_blocks, kBlockTokens, config.token_bytes()});
}

const uint8_t* PagedKvCache::token(int64_t block, int64_t slot) const {
  CACHALOT_CHECK_ARG(block >= 0 && block < num_blocks_ && slot >= 0 && slot < kBlockTokens,
                     "MLA cache: block {} slot {} outside {} blocks of {}", block, slot, num_blocks_, kBlockTokens);
  return storage_.data<uint8_t>() + (block * kBlockTokens + slot) * config_.token_bytes();
}

uint8_t* PagedKvCache::mutable_token(int64_t block, int64_t slot) { return const_cast<uint8_t*>(token(block, slot)); }

void PagedKvCache::write_token(int64_t block, int64_t slot, const float* latent, const float* rope) {
  uint8_t* t = mutable_token(block, slot);
  const int64_t d = config_.latent_dim;
  if (config_.format == KvFormat::kF32) {
    std::memcpy(t, latent, static_cast<size_t>(d) * 4);
    std::memcpy(t + d * 4, rope, static_cast<size_t>(config_.rope_dim) * 4);
    return;
  }
  if (config_.format == KvFormat::kBf16) {
    convert(latent, reinterpret_cast<bf16*>(t), static_cast<size_t>(d));
    convert(rope, reinterpret_cast<bf16*>(t) + d, static_cast<size_t>(config_.rope_dim));
    return;
  }
  auto* codes = reinterpret_cast<fp8_e4m3*>(t);
  auto* scales = reinterpret_cast<float*>(t + d);
  for (int64_t g = 0; g < config_.scale_groups(); ++g) {
    const int64_t c0 = g * 128, n = std::min<int64_t>(128, d - c0);
    const float scale = gemm::quantize_group(latent + c0, n, gemm::group_amax(latent + c0, n), codes + c0);
    std::memcpy(scales + g, &scale, sizeof(float));
  }
  convert(rope, reinterpret_cast<bf16*>(t + d + config_.scale_groups() * 4), static_cast<size_t>(config_.rope_dim));
}

void decode_token(const CacheConfig& config, const uint8_t* t, float* key) {
  const int64_t d = config.latent_dim;
  if (config.format == KvFormat::kF32) {
    std::memcpy(key, t, static_cast<size_t>(config.key_dim()) * 4);
    return;
  }
  if (config.format == KvFormat::kBf16) {
    convert(reinterpret_cast<const bf16*>(t), key, static_cast<size_t>(config.key_dim()));
    return;
  }
  convert(reinterpret_cast<const fp8_e4m3*>(t), key, static_cast<size_t>(d));
  for (int64_t g = 0; g < config.scale_groups(); ++g) {
    float scale;
    std::memcpy(&scale, t + d + g * 4, sizeof(float));
    for (int64_t c = g * 128; c < std::min<int64_t>(d, g * 128 + 128); ++c) key[c] *= scale;
  }
  convert(reinterpret_cast<const bf16*>(t + d + config.scale_groups() * 4), key + d,
          static_cast<size_t>(config.rope_dim));
}

void PagedKvCache::read_token(int64_t block, int64_t slot, float* key) const {
  decode_token(config_, token(block, slot), key);
}

void PagedKvCache::read_token_bf16(int64_t block, int64_t slot, uint16_t* key) const {
  token::to_bf16(config_, token(block, slot), key);
}

void PagedKvCache::fill_token(int64_t block, int64_t slot, float value) {
  uint8_t* t = mutable_token(block, slot);
  if (std::isnan(value)) {
    // 0xFF is NaN in BF16 (as 0xFFFF), in E4M3 and as an FP32 scale: every field reads NaN.
    std::memset(t, 0xff, static_cast<size_t>(config_.token_bytes()));
    return;
  }
  std::vector<float> latent(static_cast<size_t>(config_.latent_dim), value), rope(static_cast<size_t>(config_.rope_dim), value);
  write_token(block, slot, latent.data(), rope.data());
}

}  // namespace cachalot::mla
