#include "mla/cpu/chunk_pack.h"

#include "core/isa.h"

namespace cachalot::mla::pack {

void pack_kt(const uint16_t* tokens, int64_t key_dim, int64_t kq_blocks, uint32_t* kt) {
  if (active_isa() == Isa::kAvx512)
    avx512::pack_kt(tokens, key_dim, kq_blocks, kt);
  else
    portable::pack_kt(tokens, key_dim, kq_blocks, kt);
}

void pack_v(const uint16_t* tokens, int64_t key_dim, int64_t latent, uint32_t* vt) {
  if (active_isa() == Isa::kAvx512)
    avx512::pack_v(tokens, key_dim, latent, vt);
  else
    portable::pack_v(tokens, key_dim, latent, vt);
}

namespace portable {

void pack_kt(const uint16_t* tokens, int64_t key_dim, int64_t kq_blocks, uint32_t* kt) {
  const int64_t pairs = key_dim / 2;
  for (int64_t i = 0; i < 128; ++i) {
    const auto* src = reinterpret_cast<const uint32_t*>(tokens + i * key_dim);
    uint32_t* panel = kt + (i / 16) * kq_blocks * 1024 + i % 16;
    for (int64_t g = 0; g < pairs; ++g) panel[(g / 64) * 1024 + (g % 64) * 16] = src[g];
  }
}

void pack_v(const uint16_t* tokens, int64_t key_dim, int64_t latent, uint32_t* vt) {
  for (int64_t j = 0; j < 64; ++j) {
    const uint16_t* a = tokens + (2 * j) * key_dim;
    const uint16_t* b = a + key_dim;
    for (int64_t c0 = 0; c0 < latent; c0 += 16) {
      uint32_t* dst = vt + (c0 / 16) * 1024 + j * 16;
      for (int64_t lane = 0; lane < 16; ++lane) dst[lane] = a[c0 + lane] | (uint32_t{b[c0 + lane]} << 16);
    }
  }
}

}  // namespace portable
}  // namespace cachalot::mla::pack
