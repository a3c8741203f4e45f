// One chunk of FlashAttention for a block of query rows (internal to src/mla), over keys packed
// by cpu/chunk_pack.h: S = Q K^T through the BF16 tile kernel (the zero pairs past key_dim
// skipped), the online softmax (cpu/online_softmax.h), then O += P V. mla_decode runs it over
// the cached latents (V = the latent part of K), mla_prefill over per-head expanded keys.
#pragma once

#include <cstdint>

namespace cachalot::mla::chunk {

struct Step {
  int64_t rows = 0;
  const uint16_t* q = nullptr;   // [rows][kq_blocks * 128] BF16 queries, zero past key_dim
  int64_t key_dim = 0;
  const uint32_t* kt = nullptr;  // the chunk's 8 K^T panels
  const uint32_t* vt = nullptr;  // the chunk's V panels
  int64_t v_panels = 0;          // O is v_panels * 16 wide
  const int32_t* valid = nullptr;  // per row: visible keys of the chunk
  float scale = 1.0f;
  float* scores = nullptr;       // scratch [rows][128]
  uint16_t* p = nullptr;         // scratch [rows][128]
  float* m = nullptr;            // [rows] running max
  float* l = nullptr;            // [rows] running sum
  float* out = nullptr;          // [rows][ld_out] accumulators
  int64_t ld_out = 0;
};

void attend(const Step& step);

}  // namespace cachalot::mla::chunk
