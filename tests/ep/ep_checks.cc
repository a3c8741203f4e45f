#include "tests/ep/ep_checks.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "core/error.h"
#include "ep/buffer.h"
#include "ep/collectives.h"
#include "gemm/quantize.h"

namespace cachalot::ep::checks {
namespace {

template <typename... Args> void expect(bool ok, fmt::format_string<Args...> f, Args&&... args) {
  if (!ok) throw std::runtime_error(fmt::format(f, std::forward<Args>(args)...));
}

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Everything one rank sends, regenerable by any rank.
struct RankData {
  int64_t tokens = 0, k = 0, hidden = 0;
  Tensor x;        // F32 [T, H]
  Tensor topk;     // I64 [T, K] (DeepEP's dtype; the I32 path is used by the engine)
  Tensor weights;  // F32 [T, K]
  gemm::Fp8Tensor q;
  // Row t as the receiver sees it in F32 (dequantized when FP8 is sent).
  std::vector<float> row(int64_t t, bool fp8) const {
    std::vector<float> r(static_cast<size_t>(hidden));
    for (int64_t j = 0; j < hidden; ++j)
      r[j] = fp8 ? fp8_e4m3_to_float(q.data.data<fp8_e4m3>()[t * hidden + j]) * q.scales.data<float>()[t * q.scales.size(1) + j / 128]
                 : x.data<float>()[t * hidden + j];
    return r;
  }
  int32_t expert(int64_t t, int64_t j) const { return static_cast<int32_t>(topk.data<int64_t>()[t * k + j]); }
  float weight(int64_t t, int64_t j) const { return weights.data<float>()[t * k + j]; }
};

RankData make_data(const Case& c, int rank, int world) {
  RankData d;
  d.tokens = c.tokens + rank % 3;
  d.k = c.k;
  d.hidden = c.hidden;
  const int64_t per = c.experts_per_rank, experts = per * world;
  std::mt19937_64 rng(mix(c.seed * 1000 + static_cast<uint64_t>(rank)));
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f), positive(0.05f, 1.0f);
  d.x = Tensor::empty(DType::kF32, {d.tokens, d.hidden});
  for (int64_t i = 0; i < d.x.numel(); ++i) d.x.mutable_data<float>()[i] = unit(rng);
  d.topk = Tensor::empty(DType::kI64, {d.tokens, d.k});
  d.weights = Tensor::empty(DType::kF32, {d.tokens, d.k});
  for (int64_t t = 0; t < d.tokens; ++t) {
    std::vector<int64_t> pool;
    switch (c.routing) {
      case Routing::kFirstRankOnly:
        for (int64_t e = 0; e < per; ++e) pool.push_back(e);
        break;
      case Routing::kOneRankEach: {
        const int64_t r = static_cast<int64_t>(rng() % static_cast<uint64_t>(world));
        for (int64_t e = 0; e < per; ++e) pool.push_back(r * per + e);
        break;
      }
      case Routing::kSkewed:
        // The first experts appear many times: they are picked far more often.
        for (int64_t e = 0; e < experts; ++e)
          for (int64_t rep = 0; rep < (e < 3 ? 12 : 1); ++rep) pool.push_back(e);
        break;
      default:
        for (int64_t e = 0; e < experts; ++e) pool.push_back(e);
    }
    std::vector<int64_t> chosen;
    while (static_cast<int64_t>(chosen.size()) < d.k && !pool.empty()) {
      const int64_t e = pool[rng() % pool.size()];
      pool.erase(std::remove(pool.begin(), pool.end(), e), pool.end());
      chosen.push_back(e);
    }
    for (int64_t j = 0; j < d.k; ++j) {
      int64_t e = j < static_cast<int64_t>(chosen.size()) ? chosen[j] : -1;
      if (c.routing == Routing::kWithHoles && (t % 5 == 0 || rng() % 4 == 0)) e = -1;
      d.topk.mutable_data<int64_t>()[t * d.k + j] = e;
      d.weights.mutable_data<float>()[t * d.k + j] = positive(rng);
    }
  }
  d.q = gemm::quantize_activations(d.x);
  return d;
}

bool same_bytes(const void* a, const void* b, size_t n) { return std::memcmp(a, b, n) == 0; }

// sum_k w_k * row over the experts of token t that satisfy `take`, in k order (the order the
// receiving side and combine use), starting from acc.
template <typename Take> void add_weighted(const RankData& d, int64_t t, bool fp8, Take take, std::vector<float>& acc) {
  const std::vector<float> row = d.row(t, fp8);
  for (int64_t j = 0; j < d.k; ++j) {
    if (!take(d.expert(t, j))) continue;
    const float w = d.weight(t, j);
    for (int64_t i = 0; i < d.hidden; ++i) acc[i] += w * row[i];
  }
}

void expect_close_to_weighted_x(const RankData& d, int64_t t, bool fp8, const float* y, double tolerance, const char* what) {
  double wsum = 0;
  for (int64_t j = 0; j < d.k; ++j)
    if (d.expert(t, j) >= 0) wsum += d.weight(t, j);
  const std::vector<float> row = d.row(t, fp8);
  for (int64_t i = 0; i < d.hidden; ++i) {
    const double want = row[i] * wsum;
    expect(std::fabs(y[i] - want) <= tolerance * (1.0 + std::fabs(want)), "{}: token {} element {}: {} vs x*sum(w) {}", what, t,
           i, y[i], want);
  }
}

}  // namespace

std::string Case::name() const {
  static const char* names[] = {"random", "skewed", "first-rank-only", "one-rank-each", "with-holes"};
  return fmt::format("{} seed={} tokens={} hidden={} k={} experts/rank={}{}{}", names[static_cast<int>(routing)], seed,
                     tokens, hidden, k, experts_per_rank, fp8 ? " fp8" : "", in_place ? " in-place" : "");
}

void normal_roundtrip(Transport& t, const Case& c) {
  const int world = t.world_size(), me = t.rank();
  const int64_t per = c.experts_per_rank, experts = per * world;
  std::vector<RankData> all;
  for (int r = 0; r < world; ++r) all.push_back(make_data(c, r, world));
  const RankData& mine = all[me];
  Buffer buffer(t);

  const DispatchLayout layout = buffer.get_dispatch_layout(mine.topk, experts);
  for (int64_t tok = 0; tok < mine.tokens; ++tok)
    for (int r = 0; r < world; ++r) {
      bool in = false;
      for (int64_t j = 0; j < c.k; ++j) in = in || (mine.expert(tok, j) >= 0 && mine.expert(tok, j) / per == r);
      expect(layout.is_token_in_rank[tok * world + r] == in, "{}: is_token_in_rank[{}][{}]", c.name(), tok, r);
    }
  for (int r = 0; r < world; ++r) {
    int32_t n = 0;
    for (int64_t tok = 0; tok < mine.tokens; ++tok) n += layout.is_token_in_rank[tok * world + r];
    expect(layout.tokens_per_rank[r] == n, "{}: tokens_per_rank[{}] {} vs {}", c.name(), r, layout.tokens_per_rank[r], n);
  }
  const int per_node = t.ranks_per_node();
  for (int node = 0; node < t.num_nodes(); ++node) {
    int32_t n = 0;
    for (int64_t tok = 0; tok < mine.tokens; ++tok) {
      bool in = false;
      for (int r = node * per_node; r < (node + 1) * per_node; ++r) in = in || layout.is_token_in_rank[tok * world + r];
      n += in;
    }
    expect(layout.tokens_per_node[node] == n, "{}: tokens_per_node[{}] {} vs {}", c.name(), node, layout.tokens_per_node[node], n);
  }
  for (int64_t e = 0; e < experts; ++e) {
    int32_t n = 0;
    for (int64_t i = 0; i < mine.tokens * c.k; ++i) n += mine.topk.data<int64_t>()[i] == e;
    expect(layout.tokens_per_expert[e] == n, "{}: tokens_per_expert[{}]", c.name(), e);
  }

  const DispatchOptions options{.in_place = c.in_place};
  const DispatchResult r = c.fp8 ? buffer.dispatch(mine.q.data, mine.q.scales, mine.topk, mine.weights, layout, options)
                                 : buffer.dispatch(mine.x, Tensor(), mine.topk, mine.weights, layout, options);
  // Every row against its source, in (source rank, token) order.
  std::vector<int32_t> local_count(static_cast<size_t>(per), 0);
  int64_t row = 0;
  for (int src = 0; src < world; ++src) {
    const RankData& s = all[src];
    expect(r.handle.recv_begin[src] == row, "{}: rows from rank {} start at {}, expected {}", c.name(), src,
           r.handle.recv_begin[src], row);
    for (int64_t tok = 0; tok < s.tokens; ++tok) {
      bool in = false;
      for (int64_t j = 0; j < c.k; ++j) in = in || (s.expert(tok, j) >= 0 && s.expert(tok, j) / per == me);
      if (!in) continue;
      expect(r.src_index.data<int32_t>()[row] == tok, "{}: row {} has src_index {}, expected token {} of rank {}", c.name(), row,
             r.src_index.data<int32_t>()[row], tok, src);
      const void* got = static_cast<const std::byte*>(r.x.raw_data()) + row * c.hidden * r.x.element_size();
      const void* want = c.fp8 ? static_cast<const void*>(s.q.data.data<fp8_e4m3>() + tok * c.hidden)
                               : static_cast<const void*>(s.x.data<float>() + tok * c.hidden);
      expect(same_bytes(got, want, static_cast<size_t>(c.hidden) * r.x.element_size()), "{}: row {} (rank {} token {}) differs",
             c.name(), row, src, tok);
      if (c.fp8) {
        const int64_t kb = s.q.scales.size(1);
        expect(same_bytes(r.scales.data<float>() + row * kb, s.q.scales.data<float>() + tok * kb, static_cast<size_t>(kb) * 4),
               "{}: scales of row {} differ", c.name(), row);
      }
      for (int64_t j = 0; j < c.k; ++j) {
        const int32_t e = s.expert(tok, j);
        const int32_t want_local = e >= 0 && e / per == me ? static_cast<int32_t>(e % per) : -1;
        expect(r.topk_idx.data<int32_t>()[row * c.k + j] == want_local, "{}: topk_idx of row {} slot {}", c.name(), row, j);
        expect(r.topk_weights.data<float>()[row * c.k + j] == s.weight(tok, j), "{}: weight of row {} slot {}", c.name(), row, j);
        if (want_local >= 0) ++local_count[want_local];
      }
      ++row;
    }
  }
  expect(row == r.x.size(0), "{}: received {} rows, expected {}", c.name(), r.x.size(0), row);
  expect(r.tokens_per_local_expert == local_count, "{}: tokens_per_local_expert differs", c.name());

  // Identity experts: each received row becomes sum over its local experts of w * x.
  Tensor expert_out = Tensor::zeros(DType::kF32, {row, c.hidden});
  for (int64_t i = 0; i < row; ++i) {
    std::vector<float> x(static_cast<size_t>(c.hidden));
    if (c.fp8) {
      const int64_t kb = r.scales.size(1);
      for (int64_t j = 0; j < c.hidden; ++j)
        x[j] = fp8_e4m3_to_float(r.x.data<fp8_e4m3>()[i * c.hidden + j]) * r.scales.data<float>()[i * kb + j / 128];
    } else {
      std::copy_n(r.x.data<float>() + i * c.hidden, c.hidden, x.data());
    }
    float* out = expert_out.mutable_data<float>() + i * c.hidden;
    for (int64_t j = 0; j < c.k; ++j) {
      if (r.topk_idx.data<int32_t>()[i * c.k + j] < 0) continue;
      const float w = r.topk_weights.data<float>()[i * c.k + j];
      for (int64_t e = 0; e < c.hidden; ++e) out[e] += w * x[e];
    }
  }
  const Tensor y = buffer.combine(expert_out, r.handle);
  expect(y.size(0) == mine.tokens && y.size(1) == c.hidden, "{}: combine returned {}", c.name(), y.description());
  for (int64_t tok = 0; tok < mine.tokens; ++tok) {
    // Rank order within each node, then node order (one node: plain rank order).
    std::vector<float> want(static_cast<size_t>(c.hidden), 0.0f);
    const int per_node = t.ranks_per_node();
    for (int node = 0; node < t.num_nodes(); ++node) {
      std::vector<float> node_sum(static_cast<size_t>(c.hidden), 0.0f);
      bool any = false;
      for (int dst = node * per_node; dst < (node + 1) * per_node; ++dst) {
        if (!layout.is_token_in_rank[tok * world + dst]) continue;
        std::vector<float> part(static_cast<size_t>(c.hidden), 0.0f);
        add_weighted(mine, tok, c.fp8, [&](int32_t e) { return e >= 0 && e / per == dst; }, part);
        for (int64_t i = 0; i < c.hidden; ++i) node_sum[i] += part[i];
        any = true;
      }
      if (any)
        for (int64_t i = 0; i < c.hidden; ++i) want[i] += node_sum[i];
    }
    expect(same_bytes(y.data<float>() + tok * c.hidden, want.data(), want.size() * 4),
           "{}: combine of token {} is not the rank-ordered sum", c.name(), tok);
    expect_close_to_weighted_x(mine, tok, c.fp8, y.data<float>() + tok * c.hidden, 1e-5, "normal combine");
  }
}

void low_latency_roundtrip(Transport& t, const Case& c) {
  const int world = t.world_size(), me = t.rank();
  const int64_t per = c.experts_per_rank, experts = per * world;
  std::vector<RankData> all;
  for (int r = 0; r < world; ++r) all.push_back(make_data(c, r, world));
  const RankData& mine = all[me];
  Buffer buffer(t);
  const int64_t cap = c.tokens + 2;

  // Two micro-batches in flight: both dispatches out before either is received.
  const int64_t split = mine.tokens / 2;
  auto part = [&](const Tensor& v, int64_t b, int64_t e) { return v.slice(0, b, e).clone(); };
  const Tensor xa = part(mine.x, 0, split), xb = part(mine.x, split, mine.tokens);
  const Tensor ta = part(mine.topk, 0, split), tb = part(mine.topk, split, mine.tokens);
  const Tensor wa = part(mine.weights, 0, split), wb = part(mine.weights, split, mine.tokens);
  PendingDispatch da = buffer.low_latency_dispatch(xa, ta, cap, experts, c.fp8, c.in_place);
  PendingDispatch db = buffer.low_latency_dispatch(xb, tb, cap, experts, c.fp8, c.in_place);

  auto check_and_reduce = [&](LowLatencyRecv& r, int64_t half) {
    // Expected: per local expert, rows ordered by source rank then token.
    for (int64_t e = 0; e < per; ++e) {
      int64_t row = 0;
      for (int src = 0; src < world; ++src) {
        const RankData& s = all[src];
        const int64_t lo = half == 0 ? 0 : s.tokens / 2, hi = half == 0 ? s.tokens / 2 : s.tokens;
        for (int64_t tok = lo; tok < hi; ++tok)
          for (int64_t j = 0; j < c.k; ++j) {
            if (s.expert(tok, j) != me * per + e) continue;
            const int64_t at = e * world * cap + row;
            expect(r.src_info.data<int32_t>()[2 * at] == src && r.src_info.data<int32_t>()[2 * at + 1] == tok - lo,
                   "{}: ll expert {} row {} came from ({}, {}), expected ({}, {})", c.name(), e, row,
                   r.src_info.data<int32_t>()[2 * at], r.src_info.data<int32_t>()[2 * at + 1], src, tok - lo);
            const void* got = static_cast<const std::byte*>(r.x.raw_data()) + at * c.hidden * r.x.element_size();
            const void* want = c.fp8 ? static_cast<const void*>(s.q.data.data<fp8_e4m3>() + tok * c.hidden)
                                     : static_cast<const void*>(s.x.data<float>() + tok * c.hidden);
            // FP8 rows are quantized per half; the per-row scales make that the same bytes.
            expect(same_bytes(got, want, static_cast<size_t>(c.hidden) * r.x.element_size()), "{}: ll row {} of expert {} differs",
                   c.name(), row, e);
            ++row;
          }
      }
      expect(r.count[e] == row, "{}: ll count of expert {} is {}, expected {}", c.name(), e, r.count[e], row);
    }
    // Identity experts, returned in F32 (BF16 for the FP8 cases, as DeepEP combines in BF16).
    Tensor out = Tensor::zeros(c.fp8 ? DType::kBF16 : DType::kF32, {per, world * cap, c.hidden});
    const int64_t kb = (c.hidden + 127) / 128;
    for (int64_t e = 0; e < per; ++e)
      for (int64_t i = 0; i < r.count[e]; ++i) {
        const int64_t at = e * world * cap + i;
        for (int64_t j = 0; j < c.hidden; ++j) {
          if (c.fp8)
            out.mutable_data<bf16>()[at * c.hidden + j] =
                float_to_bf16(fp8_e4m3_to_float(r.x.data<fp8_e4m3>()[at * c.hidden + j]) * r.scales.data<float>()[at * kb + j / 128]);
          else
            out.mutable_data<float>()[at * c.hidden + j] = r.x.data<float>()[at * c.hidden + j];
        }
      }
    return out;
  };
  // The first half's experts write into the combine buffer: zero copy after an in-place dispatch
  // into a slot that holds both layouts, where the combine then sends nothing. The second half's
  // come from a tensor of their own (messages), while the first's combine is outstanding.
  LowLatencyRecv ra = da.receive();
  const Tensor out_a = check_and_reduce(ra, 0);
  Tensor buffer_a = buffer.low_latency_combine_buffer(ra.handle, out_a.dtype());
  std::memcpy(buffer_a.mutable_raw_data(), out_a.raw_data(), out_a.nbytes());
  PendingCombine ca = buffer.low_latency_combine(buffer_a, wa, ra.handle);
  const bool zero_copy_fits = Buffer::low_latency_zero_copy_slot_bytes(world, cap, c.hidden, per, c.fp8 ? 1 : 4,
                                                                       out_a.element_size()) <= t.options().slot_bytes;
  expect(ca.zero_copy() == (c.in_place && t.shares_memory() && zero_copy_fits), "{}: ll combine went {}zero-copy",
         c.name(), ca.zero_copy() ? "" : "not ");
  LowLatencyRecv rb = db.receive();
  PendingCombine cb = buffer.low_latency_combine(check_and_reduce(rb, 1), wb, rb.handle);
  expect(!cb.zero_copy(), "{}: a combine of a plain tensor went zero-copy", c.name());
  const Tensor ya = ca.receive(), yb = cb.receive();

  for (int64_t tok = 0; tok < mine.tokens; ++tok) {
    const float* y = tok < split ? ya.data<float>() + tok * c.hidden : yb.data<float>() + (tok - split) * c.hidden;
    if (c.fp8) {
      expect_close_to_weighted_x(mine, tok, true, y, 2e-2, "ll combine (bf16)");
      continue;
    }
    // Sum order: destination rank ascending, then local expert ascending.
    std::vector<float> want(static_cast<size_t>(c.hidden), 0.0f);
    const std::vector<float> row = mine.row(tok, false);
    for (int64_t e = 0; e < experts; ++e)
      for (int64_t j = 0; j < c.k; ++j)
        if (mine.expert(tok, j) == e)
          for (int64_t i = 0; i < c.hidden; ++i) want[i] += mine.weight(tok, j) * row[i];
    expect(same_bytes(y, want.data(), want.size() * 4), "{}: ll combine of token {} is not the ordered weighted sum", c.name(), tok);
    expect_close_to_weighted_x(mine, tok, false, y, 1e-5, "ll combine");
  }
}

namespace {

// Rank r's test message of `size` bytes for `tag`: regenerable by every rank.
std::vector<std::byte> message_of(int rank, int tag, size_t size) {
  std::vector<std::byte> m(size);
  for (size_t i = 0; i < size; ++i) m[i] = static_cast<std::byte>((i * 131 + static_cast<size_t>(rank) * 17 + tag * 7) & 0xff);
  return m;
}

}  // namespace

void collectives(Transport& t) {
  Buffer buffer(t);
  const int world = t.world_size();
  const size_t piece = buffer.max_message_bytes();
  // Sizes per rank: empty, small, and up to 2.5 pieces (three rounds), ragged over the ranks.
  const auto size_for = [&](int rank, int tag) { return tag == 0 ? size_t{0} : (piece * 5 / 2) * ((rank + tag) % 3) / 2 + 13 * tag; };
  for (int tag = 0; tag < 3; ++tag)
    for (int root = 0; root < world; ++root) {
      const std::vector<std::byte> sent = message_of(root, tag, size_for(root, tag));
      const std::vector<std::byte> got = broadcast_bytes(buffer, root, t.rank() == root ? sent : std::vector<std::byte>{});
      if (got != sent) throw std::runtime_error(fmt::format("broadcast from root {} tag {}: wrong bytes at rank {}", root, tag, t.rank()));
      const std::vector<std::vector<std::byte>> all = gather_bytes(buffer, root, message_of(t.rank(), tag, size_for(t.rank(), tag)));
      if (t.rank() != root) {
        if (!all.empty()) throw std::runtime_error("gather: a non-root rank received something");
        continue;
      }
      for (int src = 0; src < world; ++src)
        if (all.at(static_cast<size_t>(src)) != message_of(src, tag, size_for(src, tag)))
          throw std::runtime_error(fmt::format("gather to root {} tag {}: wrong bytes from rank {}", root, tag, src));
    }
}

void all_cases(Transport& t) {
  collectives(t);
  std::vector<Case> cases;
  uint64_t seed = 1;
  for (const Routing routing : {Routing::kRandom, Routing::kSkewed, Routing::kFirstRankOnly, Routing::kOneRankEach, Routing::kWithHoles})
    for (const bool fp8 : {false, true}) {
      Case c;
      c.seed = seed++;
      c.routing = routing;
      c.fp8 = fp8;
      c.hidden = fp8 ? 320 : 96;  // FP8: a partial last 128-group
      cases.push_back(c);
    }
  Case single_token;
  single_token.tokens = 1;
  single_token.k = 8;
  cases.push_back(single_token);
  for (Case c : cases) {
    normal_roundtrip(t, c);
    low_latency_roundtrip(t, c);
    c.in_place = true;
    normal_roundtrip(t, c);
    low_latency_roundtrip(t, c);
  }
}

void overflow_then_recover(Transport& t) {
  Buffer buffer(t);
  const int world = t.world_size();
  const int64_t experts = 2 * world, big = static_cast<int64_t>(t.options().slot_bytes / sizeof(float) / 64) + 1;
  // Every rank sends `big` tokens of 64 floats to rank 0: more than any source's region.
  Tensor x = Tensor::zeros(DType::kF32, {big, 64});
  Tensor topk = Tensor::zeros(DType::kI32, {big, 1});
  Tensor w = Tensor::zeros(DType::kF32, {big, 1});
  bool raised = false;
  try {
    buffer.dispatch(x, Tensor(), topk, w, buffer.get_dispatch_layout(topk, experts));
  } catch (const Error& e) {
    raised = e.kind() == ErrorKind::kResourceExhausted && std::string(e.what()).find("slot_bytes") != std::string::npos;
  }
  expect(raised, "rank {}: an oversized dispatch did not fail with kResourceExhausted", t.rank());
  raised = false;
  try {
    buffer.dispatch(x, Tensor(), topk, w, buffer.get_dispatch_layout(topk, experts), {.in_place = true});
  } catch (const Error& e) {
    raised = e.kind() == ErrorKind::kResourceExhausted && std::string(e.what()).find("slot_bytes") != std::string::npos;
  }
  expect(raised, "rank {}: an oversized in-place dispatch did not fail with kResourceExhausted", t.rank());
  Case c;
  c.tokens = 3;
  c.hidden = 64;
  c.k = 2;
  c.experts_per_rank = 2;
  normal_roundtrip(t, c);
  c.in_place = true;
  normal_roundtrip(t, c);
}

}  // namespace cachalot::ep::checks
