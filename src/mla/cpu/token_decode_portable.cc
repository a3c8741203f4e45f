#include <cstring>
#include <vector>

#include "core/convert.h"
#include "core/isa.h"
#include "mla/cpu/token_decode.h"

namespace cachalot::mla::token {

void to_bf16(const CacheConfig& config, const uint8_t* token, uint16_t* key) {
  if (config.format == KvFormat::kBf16) {
    std::memcpy(key, token, static_cast<size_t>(config.key_dim()) * 2);
  } else if (config.format == KvFormat::kFp8 && active_isa() == Isa::kAvx512) {
    avx512::fp8_to_bf16(config, token, key);
  } else {
    portable::to_bf16(config, token, key);
  }
}

namespace portable {

void to_bf16(const CacheConfig& config, const uint8_t* token, uint16_t* key) {
  thread_local std::vector<float> values;
  values.resize(static_cast<size_t>(config.key_dim()));
  decode_token(config, token, values.data());
  convert(values.data(), reinterpret_cast<bf16*>(key), values.size());
}

}  // namespace portable
}  // namespace cachalot::mla::token
