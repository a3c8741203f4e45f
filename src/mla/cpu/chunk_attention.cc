#include "mla/cpu/chunk_attention.h"

#include <algorithm>

#include "gemm/tile_kernel.h"
#include "mla/cpu/chunk_pack.h"
#include "mla/cpu/online_softmax.h"

namespace cachalot::mla::chunk {

void attend(const Step& c) {
  using gemm::kernels::kMaxPanels;
  using gemm::kernels::Tile;
  using pack::kChunkTokens;
  using pack::kPanelDwords;
  const int64_t kq_blocks = (c.key_dim + 127) / 128;

  // S = Q K^T over the chunk's 128 tokens (8 panels of 16).
  std::fill_n(c.scores, c.rows * kChunkTokens, 0.0f);
  Tile st;
  st.panels = kMaxPanels;
  st.kblocks = kq_blocks;
  st.last_kblock_pairs = static_cast<int>((c.key_dim - (kq_blocks - 1) * 128) / 2);
  st.a = c.q;
  st.lda = kq_blocks * 128;
  st.a_kb_stride = 128;
  st.b_stride = kPanelDwords * 4;
  st.ldo = kChunkTokens;
  for (int64_t p0 = 0; p0 < 8; p0 += kMaxPanels) {
    for (int p = 0; p < kMaxPanels; ++p) st.b[p] = reinterpret_cast<const uint8_t*>(c.kt + (p0 + p) * kq_blocks * kPanelDwords);
    st.out = c.scores + p0 * 16;
    gemm::kernels::run_rows(st, c.rows);
  }

  softmax::Chunk sc;
  sc.rows = c.rows, sc.width = kChunkTokens;
  sc.scores = c.scores, sc.ld_scores = kChunkTokens;
  sc.valid = c.valid, sc.scale = c.scale;
  sc.p = c.p, sc.ld_p = kChunkTokens;
  sc.m = c.m, sc.l = c.l;
  sc.out = c.out, sc.ld_out = c.ld_out, sc.out_width = c.v_panels * 16;
  softmax::online_softmax(sc);

  // O += P V.
  Tile pt;
  pt.kblocks = 1;
  pt.a = c.p;
  pt.lda = kChunkTokens;
  pt.a_kb_stride = kChunkTokens;
  pt.b_stride = 0;
  pt.ldo = c.ld_out;
  for (int64_t p0 = 0; p0 < c.v_panels; p0 += kMaxPanels) {
    pt.panels = static_cast<int>(std::min<int64_t>(kMaxPanels, c.v_panels - p0));
    for (int p = 0; p < pt.panels; ++p) pt.b[p] = reinterpret_cast<const uint8_t*>(c.vt + (p0 + p) * kPanelDwords);
    pt.out = c.out + p0 * 16;
    gemm::kernels::run_rows(pt, c.rows);
  }
}

}  // namespace cachalot::mla::chunk
