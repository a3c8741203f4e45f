#include "gemm/gemm_driver.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/convert.h"
#include "core/isa.h"
#include "core/thread_pool.h"
#include "core/trace.h"
#include "gemm/tile_kernel.h"

namespace cachalot::gemm::detail {
namespace {

using kernels::kMaxPanels;
using kernels::kMaxRows;
using kernels::Tile;

// Rows per M-block on the blocked path: each k-block of the weight chunk (64 x 128 BF16 = 16 KiB)
// is decoded once per M-block and stays in L1 while the block's 86 row tiles reuse it; the FP32
// block (516 x 64, 129 KiB) lives in L2. Blocks of 96 or 192 rows (FP32 block in L1) lost 5-10%
// to the repeated decode at M = 1024; 1026 rows ran the same as 516.
constexpr int64_t kRowsPerBlock = 86 * kMaxRows;
// Activations (BF16, per problem) above this many bytes are not expected to stay in a core's L2
// (1 MiB on Zen 4/5, shared with the FP32 block and the weights) between the chunks that re-read
// them: the kernel prefetches them (Tile::prefetch_a). It was 8 MiB: 128 x 2112 x 7168 (1.8 MiB)
// went from 0.93-0.94 to 0.98 of oneDNN with it, 1024 x 7168 x 2048 +2%; no loss at 100 KiB.
constexpr int64_t kPrefetchActivationBytes = int64_t{512} << 10;
// Up to this many rows, FP8 weights are decoded in registers straight from the packed stream
// (memory-bound decode); more rows decode each k-block once into L1 and reuse it.
constexpr int64_t kDirectRows = 2;

using RunTile = void (*)(const Tile&);

// Resolved once per GEMM call, so tiles do not re-dispatch (kernels::run_tile does, per tile).
RunTile tile_function() {
  return active_isa() == Isa::kAvx512 ? &kernels::avx512::run_tile : &kernels::portable::run_tile;
}

// Per-thread scratch, grown on demand and reused across calls.
struct Scratch {
  std::vector<float> out;
  std::vector<uint16_t> decoded;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

void store_rows(const Problem& pr, int64_t row0, int64_t rows, int64_t col0, int64_t cols, const float* block,
                int64_t ldb) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = block + r * ldb;
    const int64_t row = row0 + r;
    // Only an addend goes through a temporary: the per-element select this loop had for a
    // missing addend kept GCC from vectorising it and cost ~5% at 128 rows (the block's values
    // are never -0, so skipping "+ 0" changes no bit).
    float tmp[kMaxPanels * kPanelRows];
    if (pr.c) {
      const float* c = pr.c + row * pr.ldc + col0;
      for (int64_t i = 0; i < cols; ++i) tmp[i] = src[i] + c[i];
      src = tmp;
    }
    if (pr.d_dtype == DType::kF32) {
      std::memcpy(static_cast<float*>(pr.d) + row * pr.ldd + col0, src, static_cast<size_t>(cols) * sizeof(float));
    } else {
      convert(src, static_cast<bf16*>(pr.d) + row * pr.ldd + col0, static_cast<size_t>(cols));
    }
  }
}

// One work item: all rows of a problem against one chunk of up to kMaxPanels panels.
void run_chunk(const PackedWeights& b, const Problem& pr, int64_t first_panel, RunTile run_tile) {
  const int64_t panels = std::min<int64_t>(kMaxPanels, b.panels() - first_panel);
  const int64_t col0 = first_panel * kPanelRows;
  const int64_t cols = std::min(b.n() - col0, panels * kPanelRows);
  const int64_t width = kMaxPanels * kPanelRows;
  const bool fp8 = b.format() == PackedWeights::Format::kFp8;
  Scratch& s = scratch();

  Tile t;
  t.panels = static_cast<int>(panels);
  t.lda = 128;
  t.a_kb_stride = pr.a_kb_stride;
  t.ldsa = pr.ldsa;
  for (int64_t p = 0; p < panels; ++p) t.sb[p] = b.panel_scales(pr.group, first_panel + p);

  // On the blocked path, full-width chunks without an addend are written by the kernel itself:
  // F32 output serves as the FP32 block, BF16 output is rounded in the last k-block's epilogue
  // (Tile::out_bf16). The others go through the scratch block and store_rows.
  const bool kernel_writes_d = !pr.c && cols == panels * kPanelRows && pr.m > kDirectRows;
  // Points `tile` (its first row at `row` of the problem) at its FP32 block, given the scratch
  // block's row for it, and at the BF16 output when this is the last k-block.
  auto point_output = [&](Tile& tile, int64_t row, float* scratch_row, bool last_kblock) {
    tile.out = scratch_row;
    tile.ldo = width;
    tile.out_bf16 = nullptr;
    if (!kernel_writes_d) return;
    if (pr.d_dtype == DType::kF32) {
      tile.out = static_cast<float*>(pr.d) + row * pr.ldd + col0;
      tile.ldo = pr.ldd;
    } else if (last_kblock) {
      tile.out_bf16 = reinterpret_cast<uint16_t*>(static_cast<bf16*>(pr.d) + row * pr.ldd + col0);
      tile.ldo_bf16 = pr.ldd;
    }
  };

  if (b.kblocks() == 0) {
    // K = 0: no k-block stores into the block (Tile::store_first), so the product is zeros here.
    s.out.assign(static_cast<size_t>(pr.m * width), 0.0f);
    store_rows(pr, 0, pr.m, col0, cols, s.out.data(), width);
    return;
  }
  if (fp8 && pr.m <= kDirectRows) {
    // Memory-bound: stream the FP8 panels once, decoding in registers.
    s.out.resize(static_cast<size_t>(pr.m * width));
    t.rows = static_cast<int>(pr.m);
    t.kblocks = b.kblocks();
    t.a = pr.a;
    t.sa = pr.sa;
    t.b_fp8 = true;
    t.b_stride = b.panel_stride(first_panel);
    for (int64_t p = 0; p < panels; ++p) t.b[p] = b.panel(pr.group, first_panel + p);
    // One or two rows: the scratch block and store_rows (their cost is nothing here, and the
    // streaming kernel keeps the registers the output pointer would take).
    t.out = s.out.data();
    t.ldo = width;
    t.store_first = true;
    run_tile(t);
    store_rows(pr, 0, pr.m, col0, cols, s.out.data(), width);
    return;
  }

  // Blocked: per M-block, walk k-blocks; each k-block of the chunk is decoded once (FP8) or
  // read in place (BF16) and reused by every row tile of the block.
  const int64_t block_elems = kPairsPerBlock * kPanelRows * 2;
  s.out.resize(static_cast<size_t>(kRowsPerBlock * width));
  if (fp8) s.decoded.resize(static_cast<size_t>(kMaxPanels * block_elems));
  t.kblocks = 1;
  t.b_fp8 = false;
  t.b_stride = 0;
  t.prefetch_a = pr.m * b.kblocks() * 128 * 2 > kPrefetchActivationBytes;
  for (int64_t m0 = 0; m0 < pr.m; m0 += kRowsPerBlock) {
    const int64_t rows = std::min(kRowsPerBlock, pr.m - m0);
    for (int64_t kb = 0; kb < b.kblocks(); ++kb) {
      Tile tk = t;
      tk.store_first = kb == 0;
      // The chunk's next k-block (panels x 2 KiB, contiguous) is on its way while this one
      // is decoded and used: the row tiles below prefetch it a few lines each.
      const uint8_t* next = fp8 && kb + 1 < b.kblocks()
                                ? b.panel(pr.group, first_panel) + (kb + 1) * b.panel_stride(first_panel)
                                : nullptr;
      const int64_t next_bytes = next ? b.panel_stride(first_panel) : 0;
      for (int64_t p = 0; p < panels; ++p) {
        const uint8_t* src = b.panel(pr.group, first_panel + p) + kb * b.panel_stride(first_panel);
        if (fp8) {
          uint16_t* dst = s.decoded.data() + p * block_elems;
          convert(reinterpret_cast<const fp8_e4m3*>(src), reinterpret_cast<bf16*>(dst), static_cast<size_t>(block_elems));
          tk.b[p] = reinterpret_cast<const uint8_t*>(dst);
        } else {
          tk.b[p] = src;
        }
        if (tk.sb[p]) tk.sb[p] += kb;
      }
      // Row tiles of near-equal height (128 rows: 18 of 6 and 4 of 5, not 21 of 6 and one of 2):
      // a thin tile re-reads the decoded block for little work. Two calls: the taller tiles,
      // then the others.
      const int64_t tiles = (rows + kMaxRows - 1) / kMaxRows;
      const int64_t tall = rows % tiles, height = rows / tiles;
      for (int64_t r0 = 0; r0 < rows;) {
        const int64_t h = r0 == 0 && tall > 0 ? height + 1 : height;
        tk.rows = static_cast<int>(h);
        tk.row_tiles = r0 == 0 && tall > 0 ? tall : (rows - r0) / h;
        tk.a = pr.a + (m0 + r0) * 128 + kb * pr.a_kb_stride;
        tk.sa = pr.sa ? pr.sa + (m0 + r0) * pr.ldsa + kb : nullptr;
        point_output(tk, m0 + r0, s.out.data() + r0 * width, kb + 1 == b.kblocks());
        // This call's share of the next k-block's lines, in proportion to its rows.
        const int64_t from = next_bytes * r0 / rows / 64 * 64;
        const int64_t to = next_bytes * (r0 + h * tk.row_tiles) / rows / 64 * 64;
        tk.prefetch_b = next ? next + from : nullptr;
        tk.prefetch_b_bytes = r0 + h * tk.row_tiles == rows ? next_bytes - from : to - from;
        run_tile(tk);
        r0 += h * tk.row_tiles;
      }
    }
    if (!kernel_writes_d) store_rows(pr, m0, rows, col0, cols, s.out.data(), width);
  }
}

}  // namespace

void run(const PackedWeights& b, const std::vector<Problem>& problems) {
  trace::Span span("gemm", "gemm");
  int64_t rows = 0;
  for (const Problem& p : problems) rows += p.m;
  span.arg("m", rows).arg("n", b.n()).arg("k", b.k()).arg("problems", static_cast<int64_t>(problems.size()));
  const int64_t chunks = (b.panels() + kMaxPanels - 1) / kMaxPanels;
  std::vector<std::pair<size_t, int64_t>> items;  // (problem, first panel)
  for (size_t i = 0; i < problems.size(); ++i)
    if (problems[i].m > 0)
      for (int64_t c = 0; c < chunks; ++c) items.emplace_back(i, c * kMaxPanels);
  const RunTile run_tile = tile_function();
  // One problem: equal chunks, so each thread takes a contiguous range and streams it (its
  // prefetches run into its own next chunk). Several (MoE groups of different sizes): dynamic.
  const Schedule schedule = problems.size() == 1 ? Schedule::kStatic : Schedule::kDynamic;
  ThreadPool::global().parallel_for(0, static_cast<int64_t>(items.size()), [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) run_chunk(b, problems[items[i].first], items[i].second, run_tile);
  }, schedule, 1);
}

}  // namespace cachalot::gemm::detail
