// Packing one chunk of 128 cached tokens (BF16 keys, [token][key_dim]) into the panel layouts of
// the tile kernel (internal to src/mla):
//   K^T panels: panel p = tokens 16p..16p+15; the pair g of token 16p + lane goes to dword
//               (g / 64) * 1024 + (g % 64) * 16 + lane of the panel (kq_blocks * 1024 dwords);
//   V panels:   panel c = latent dims 16c..16c+15; tokens 2j, 2j+1 of dim 16c + lane go to dword
//               j * 16 + lane of the panel (1024 dwords), token 2j in the low half.
// Pairs past key_dim / 2 in the K^T panels are not written (the caller keeps them zero).
#pragma once

#include <cstdint>

namespace cachalot::mla::pack {

inline constexpr int64_t kChunkTokens = 128;  // tokens per chunk: one k-block of P V
inline constexpr int64_t kPanelDwords = 1024;  // one 128-deep block of a 16-wide panel, as k-pairs

// Pack with the active ISA's kernel.
void pack_kt(const uint16_t* tokens, int64_t key_dim, int64_t kq_blocks, uint32_t* kt);
void pack_v(const uint16_t* tokens, int64_t key_dim, int64_t latent, uint32_t* vt);

namespace portable {
void pack_kt(const uint16_t* tokens, int64_t key_dim, int64_t kq_blocks, uint32_t* kt);
void pack_v(const uint16_t* tokens, int64_t key_dim, int64_t latent, uint32_t* vt);
}  // namespace portable
namespace avx512 {
void pack_kt(const uint16_t* tokens, int64_t key_dim, int64_t kq_blocks, uint32_t* kt);
void pack_v(const uint16_t* tokens, int64_t key_dim, int64_t latent, uint32_t* vt);
}  // namespace avx512

}  // namespace cachalot::mla::pack
