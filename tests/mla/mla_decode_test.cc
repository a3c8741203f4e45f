#include "mla/mla_decode.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/convert.h"
#include "core/error.h"
#include "core/isa.h"

namespace cachalot::mla {
namespace {

// A batch in a paged cache: each request's tokens in randomly chosen (shuffled) blocks, every
// other slot of the cache poisoned with NaN so a stray read shows up in the output.
struct Batch {
  CacheConfig config;
  std::vector<int32_t> seqlens;
  int64_t max_blocks = 0;
  std::unique_ptr<PagedKvCache> cache;
  Tensor block_table, cache_seqlens;
};

Batch make_batch(CacheConfig config, const std::vector<int32_t>& seqlens, uint32_t seed) {
  Batch b{config, seqlens, 0, nullptr, {}, {}};
  int64_t total_blocks = 0;
  for (int32_t len : seqlens) {
    const int64_t blocks = (len + kBlockTokens - 1) / kBlockTokens;
    b.max_blocks = std::max(b.max_blocks, blocks + 1);  // one spare entry per row
    total_blocks += blocks;
  }
  const int64_t num_blocks = total_blocks + 3;  // a few blocks nobody uses
  b.cache = std::make_unique<PagedKvCache>(config, num_blocks);
  for (int64_t blk = 0; blk < num_blocks; ++blk)
    for (int64_t slot = 0; slot < kBlockTokens; ++slot) b.cache->fill_token(blk, slot, NAN);
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  const int64_t batch = static_cast<int64_t>(seqlens.size());
  b.block_table = Tensor::empty(DType::kI32, {batch, std::max<int64_t>(b.max_blocks, 1)});
  std::fill_n(b.block_table.mutable_data<int32_t>(), b.block_table.numel(), -1);  // unused entries: invalid
  b.cache_seqlens = Tensor::empty(DType::kI32, {batch});
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> latent(static_cast<size_t>(config.latent_dim)), rope(static_cast<size_t>(config.rope_dim));
  size_t next = 0;
  for (int64_t r = 0; r < batch; ++r) {
    b.cache_seqlens.mutable_data<int32_t>()[r] = seqlens[r];
    for (int64_t t = 0; t < seqlens[r]; ++t) {
      if (t % kBlockTokens == 0) b.block_table.mutable_at<int32_t>(r, t / kBlockTokens) = ids[next++];
      for (auto& x : latent) x = dist(rng) * 0.3f;
      for (auto& x : rope) x = dist(rng) * 0.3f;
      b.cache->write_token(b.block_table.at<int32_t>(r, t / kBlockTokens), t % kBlockTokens, latent.data(), rope.data());
    }
  }
  return b;
}

Tensor random_q(int64_t batch, int64_t s_q, int64_t h_q, int64_t key_dim, uint32_t seed, DType dtype) {
  Tensor q32 = Tensor::empty(DType::kF32, {batch, s_q, h_q, key_dim});
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int64_t i = 0; i < q32.numel(); ++i) q32.mutable_data<float>()[i] = dist(rng);
  if (dtype == DType::kF32) return q32;
  Tensor q = Tensor::empty(DType::kBF16, q32.shape());
  convert(q32.data<float>(), q.mutable_data<bf16>(), static_cast<size_t>(q.numel()));
  return q;
}

// Plain softmax attention over the gathered cache, in float64. Queries and keys enter at BF16
// precision, as mla_decode documents (F32 queries and dequantized FP8 keys are rounded).
void reference(const Batch& b, const Tensor& q, float scale, bool causal, std::vector<double>& out,
               std::vector<double>& lse) {
  const int64_t batch = q.size(0), s_q = q.size(1), h_q = q.size(2), kd = q.size(3), d = b.config.latent_dim;
  out.assign(static_cast<size_t>(batch * s_q * h_q * d), 0.0);
  lse.assign(static_cast<size_t>(batch * h_q * s_q), -INFINITY);
  std::vector<float> qf(static_cast<size_t>(q.numel()));
  if (q.dtype() == DType::kF32)
    for (size_t i = 0; i < qf.size(); ++i) qf[i] = bf16_to_float(float_to_bf16(q.data<float>()[i]));
  else
    convert(q.data<bf16>(), qf.data(), qf.size());
  std::vector<float> key(static_cast<size_t>(kd));
  for (int64_t r = 0; r < batch; ++r) {
    const int64_t len = b.seqlens[r];
    std::vector<std::vector<float>> keys(static_cast<size_t>(len));
    for (int64_t t = 0; t < len; ++t) {
      keys[t].resize(static_cast<size_t>(kd));
      b.cache->read_token(b.block_table.at<int32_t>(r, t / kBlockTokens), t % kBlockTokens, keys[t].data());
      for (float& x : keys[t]) x = bf16_to_float(float_to_bf16(x));  // as the kernel sees FP8 keys
    }
    for (int64_t sq = 0; sq < s_q; ++sq)
      for (int64_t h = 0; h < h_q; ++h) {
        const float* qr = qf.data() + ((r * s_q + sq) * h_q + h) * kd;
        const int64_t visible = causal ? std::min<int64_t>(len, len - s_q + sq + 1) : len;
        if (visible <= 0) continue;
        std::vector<double> s(static_cast<size_t>(visible));
        double mx = -INFINITY;
        for (int64_t t = 0; t < visible; ++t) {
          double acc = 0;
          for (int64_t c = 0; c < kd; ++c) acc += double(qr[c]) * double(keys[t][c]);
          s[t] = acc * scale;
          mx = std::max(mx, s[t]);
        }
        double sum = 0;
        for (double& x : s) sum += (x = std::exp(x - mx));
        double* o = out.data() + ((r * s_q + sq) * h_q + h) * d;
        for (int64_t t = 0; t < visible; ++t)
          for (int64_t c = 0; c < d; ++c) o[c] += s[t] / sum * keys[t][c];
        lse[(r * h_q + h) * s_q + sq] = mx + std::log(sum);
      }
  }
}

struct Case {
  CacheConfig config;
  std::vector<int32_t> seqlens;
  int64_t h_q, s_q;
  bool causal;
  int workers;
  DType q_dtype = DType::kBF16;
};

void check_case(const Case& c, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "latent " << c.config.latent_dim << " rope " << c.config.rope_dim << " fp8 "
                                    << (c.config.format == KvFormat::kFp8) << " h_q " << c.h_q << " s_q " << c.s_q
                                    << " causal " << c.causal << " workers " << c.workers);
  const Batch b = make_batch(c.config, c.seqlens, seed);
  const int64_t batch = static_cast<int64_t>(c.seqlens.size());
  const Tensor q = random_q(batch, c.s_q, c.h_q, c.config.key_dim(), seed + 1, c.q_dtype);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.config.key_dim()));
  const SplitPlan plan = make_split_plan(b.cache_seqlens, c.workers);
  Tensor out = Tensor::empty(DType::kF32, {batch, c.s_q, c.h_q, c.config.latent_dim});
  Tensor lse = Tensor::empty(DType::kF32, {batch, c.h_q, c.s_q});
  mla_decode(q, *b.cache, b.block_table, b.cache_seqlens, plan, scale, c.causal, out, lse);
  std::vector<double> want_out, want_lse;
  reference(b, q, scale, c.causal, want_out, want_lse);
  double max_err = 0;
  for (size_t i = 0; i < want_out.size(); ++i) {
    ASSERT_FALSE(std::isnan(out.data<float>()[i])) << "NaN at " << i << ": a poisoned slot was read";
    max_err = std::max(max_err, std::fabs(out.data<float>()[i] - want_out[i]));
  }
  EXPECT_LT(max_err, 2e-3);
  for (size_t i = 0; i < want_lse.size(); ++i) {
    if (std::isinf(want_lse[i])) {
      EXPECT_TRUE(std::isinf(lse.data<float>()[i]) && lse.data<float>()[i] < 0) << "lse " << i;
    } else {
      EXPECT_NEAR(lse.data<float>()[i], want_lse[i], 1e-4) << "lse " << i;
    }
  }
}

const CacheConfig kTiny{128, 32, KvFormat::kBf16};   // the tiny-dsv3 fixture's dims
const CacheConfig kV3{512, 64, KvFormat::kBf16};     // DeepSeek-V3's
const CacheConfig kV3Fp8{512, 64, KvFormat::kFp8};

TEST(MlaDecode, EdgeLengthsEveryQueryShape) {
  uint32_t seed = 1;
  for (int64_t h_q : {1, 16})
    for (int64_t s_q : {1, 2, 4})
      for (bool causal : {false, true})
        check_case({kTiny, {0, 1, 63, 64, 65, 2}, h_q, s_q, causal, 3}, seed++);
}

TEST(MlaDecode, RaggedBatchesAcrossSplits) {
  check_case({kV3, {4096, 100, 7, 1000, 3000, 64}, 16, 2, true, 4}, 11);
  check_case({kV3, {16384, 5, 70}, 16, 1, false, 8, DType::kF32}, 12);
  check_case({kTiny, {700, 1, 129}, 128, 1, false, 2}, 13);
}

TEST(MlaDecode, ManyHeads) { check_case({kV3, {300, 65, 1}, 128, 2, true, 2}, 21); }

// More query rows than one block (256 here): rows go in blocks over passes of 8 chunks; one
// worker, so the 2500-token request is a single split of three passes.
TEST(MlaDecode, ManyRowsInBlocksOverSeveralPasses) { check_case({kV3, {2500, 70}, 64, 4, true, 1}, 22); }

TEST(MlaDecode, Fp8CacheMatchesItsDequantizedValues) {
  check_case({kV3Fp8, {1000, 64, 0, 65}, 16, 2, true, 3}, 31);
  check_case({CacheConfig{128, 32, KvFormat::kFp8}, {300, 1}, 4, 1, false, 2}, 32);
  check_case({CacheConfig{128, 32, KvFormat::kF32}, {300, 1, 64}, 4, 2, true, 2}, 33);
  EXPECT_EQ(kV3Fp8.token_bytes(), 656);  // FlashMLA's FP8 token: 512 + 4 x 4 + 64 x 2
  EXPECT_EQ(kV3.token_bytes(), 1152);
}

TEST(MlaDecode, Fp8TokensBecomeTheSameBf16KeysOnEveryIsa) {
  // The kernels' key rows: decode_token's FP32 values rounded to BF16, whichever ISA does it.
  for (const CacheConfig& config : {kV3Fp8, CacheConfig{128, 32, KvFormat::kFp8}, CacheConfig{208, 32, KvFormat::kFp8}}) {
    const Batch b = make_batch(config, {70}, 31);
    std::vector<float> f32(static_cast<size_t>(config.key_dim()));
    std::vector<uint16_t> got(f32.size());
    for (int64_t t = 0; t < 70; ++t) {
      const int32_t block = b.block_table.at<int32_t>(0, t / kBlockTokens);
      b.cache->read_token(block, t % kBlockTokens, f32.data());
      b.cache->read_token_bf16(block, t % kBlockTokens, got.data());
      for (size_t i = 0; i < f32.size(); ++i) ASSERT_EQ(got[i], float_to_bf16(f32[i]).bits) << "token " << t << " value " << i;
      if (cpu_features().has_avx512_kernels()) {
        set_active_isa(Isa::kPortable);
        b.cache->read_token_bf16(block, t % kBlockTokens, got.data());
        set_active_isa(Isa::kAvx512);
        for (size_t i = 0; i < f32.size(); ++i) ASSERT_EQ(got[i], float_to_bf16(f32[i]).bits) << "portable, token " << t;
      }
    }
  }
}

TEST(MlaDecode, ZeroLengthRequestsGiveZerosAndMinusInfinity) {
  const Batch b = make_batch(kTiny, {0, 0}, 5);
  const Tensor q = random_q(2, 1, 4, kTiny.key_dim(), 6, DType::kBF16);
  Tensor out = Tensor::empty(DType::kBF16, {2, 1, 4, 128});
  Tensor lse = Tensor::empty(DType::kF32, {2, 4, 1});
  mla_decode(q, *b.cache, b.block_table, b.cache_seqlens, make_split_plan(b.cache_seqlens, 2), 0.1f, false, out, lse);
  for (int64_t i = 0; i < out.numel(); ++i) EXPECT_EQ(bf16_to_float(out.data<bf16>()[i]), 0.0f);
  for (int64_t i = 0; i < lse.numel(); ++i) EXPECT_TRUE(std::isinf(lse.data<float>()[i]) && lse.data<float>()[i] < 0);
}

TEST(MlaSplitPlan, LongRequestsAreCutSoEveryWorkerWorks) {
  std::vector<int32_t> lens = {32768};
  for (int i = 0; i < 31; ++i) lens.push_back(100);
  Tensor seqlens = Tensor::empty(DType::kI32, {32});
  std::copy(lens.begin(), lens.end(), seqlens.mutable_data<int32_t>());
  for (int workers : {1, 2, 4, 8, 16}) {
    const SplitPlan plan = make_split_plan(seqlens, workers);
    ASSERT_EQ(plan.num_workers(), workers);
    int64_t total = 0, max_cost = 0;
    for (int w = 0; w < workers; ++w) {
      EXPECT_LT(plan.worker_begin[w], plan.worker_begin[w + 1]) << "worker " << w << " has nothing to do";
      int64_t cost = 0;
      for (int32_t i = plan.worker_begin[w]; i < plan.worker_begin[w + 1]; ++i) {
        const Split& s = plan.splits[i];
        cost += (s.token_end - s.token_begin + kBlockTokens - 1) / kBlockTokens + kSplitFixedCostBlocks;
      }
      total += cost;
      max_cost = std::max(max_cost, cost);
    }
    EXPECT_LE(max_cost, total / workers + 2 * kSplitFixedCostBlocks + 1) << workers << " workers";
    // Each request's splits tile its tokens exactly, in order.
    for (int64_t r = 0; r < 32; ++r) {
      int32_t expect = 0;
      for (int32_t k = plan.request_begin[r]; k < plan.request_begin[r + 1]; ++k) {
        const Split& s = plan.splits[plan.request_splits[k]];
        EXPECT_EQ(s.request, r);
        EXPECT_EQ(s.token_begin, expect);
        expect = s.token_end;
      }
      EXPECT_EQ(expect, lens[r]);
    }
  }
}

TEST(MlaDecode, RejectsBadInputs) {
  Batch b = make_batch(kTiny, {100, 10}, 7);
  const Tensor q = random_q(2, 1, 2, kTiny.key_dim(), 8, DType::kBF16);
  Tensor out = Tensor::empty(DType::kF32, {2, 1, 2, 128});
  Tensor lse = Tensor::empty(DType::kF32, {2, 2, 1});
  const SplitPlan plan = make_split_plan(b.cache_seqlens, 2);
  auto expect_error = [&](const std::string& needle, auto&& fn) {
    try {
      fn();
      FAIL() << "expected an error mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Tensor table = b.block_table.clone();
  table.mutable_at<int32_t>(0, 1) = 999;
  expect_error("outside the cache", [&] { mla_decode(q, *b.cache, table, b.cache_seqlens, plan, 0.1f, false, out, lse); });
  Tensor long_lens = b.cache_seqlens.clone();
  long_lens.mutable_at<int32_t>(1) = 64 * 50;
  expect_error("block table holds", [&] {
    mla_decode(q, *b.cache, b.block_table, long_lens, make_split_plan(long_lens, 2), 0.1f, false, out, lse);
  });
  expect_error("other cache_seqlens", [&] { mla_decode(q, *b.cache, b.block_table, long_lens, plan, 0.1f, false, out, lse); });
  const Tensor bad_q = random_q(2, 1, 2, 100, 9, DType::kBF16);
  expect_error("last dimension", [&] { mla_decode(bad_q, *b.cache, b.block_table, b.cache_seqlens, plan, 0.1f, false, out, lse); });
  Tensor bad_lse = Tensor::empty(DType::kF32, {2, 1, 2});
  expect_error("lse must be", [&] { mla_decode(q, *b.cache, b.block_table, b.cache_seqlens, plan, 0.1f, false, out, bad_lse); });
  Tensor negative = b.cache_seqlens.clone();
  negative.mutable_at<int32_t>(0) = -1;
  expect_error("negative", [&] { make_split_plan(negative, 2); });
}

}  // namespace
}  // namespace cachalot::mla
