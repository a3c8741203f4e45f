// `cachalot bench mla`: MLA decode over the paged cache. Reports the KV bytes read per second
// against a DRAM read probe measured in the same run, TFLOPS by FlashMLA's count
// (b * h_q * s_q * (2 * 576 * s_k + 2 * s_k * 512)), the FP8 cache's token rate against the
// BF16 cache's, and, at batch 1, the naive non-absorbed path as the peer: per request, expand
// every cached latent into per-head keys and values (latent x W_UK, latent x W_UV through the
// BF16 GEMM), then attend head by head — what decoding costs without weight absorption.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "bench/bandwidth_probe.h"
#include "bench/benches.h"
#include "core/convert.h"
#include "core/thread_pool.h"
#include "core/trace.h"
#include "gemm/gemm.h"
#include "mla/mla_decode.h"

namespace cachalot::bench {
namespace {

constexpr int64_t kLatent = 512, kRope = 64, kNope = 128, kHeadV = 128;

double time_warm(const std::function<void()>& fn, bool quick) {
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return median_ns_warm(fn, 0.5, quick ? 5 : 21);
}

// A cache holding batch x seqlen tokens in consecutive blocks, filled from a pool of random
// tokens (writing each token through the quantizer would dominate the setup).
struct Workload {
  std::unique_ptr<mla::PagedKvCache> cache;
  Tensor block_table, seqlens;
};

Workload make_workload(mla::KvFormat format, int64_t batch, int64_t seqlen) {
  const mla::CacheConfig config{kLatent, kRope, format};
  const int64_t blocks_per = (seqlen + mla::kBlockTokens - 1) / mla::kBlockTokens;
  Workload w;
  w.cache = std::make_unique<mla::PagedKvCache>(config, batch * blocks_per);
  mla::PagedKvCache pool(config, 4);
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 0.3f);
  std::vector<float> latent(kLatent), rope(kRope);
  for (int64_t i = 0; i < 4 * mla::kBlockTokens; ++i) {
    for (auto& x : latent) x = dist(rng);
    for (auto& x : rope) x = dist(rng);
    pool.write_token(i / mla::kBlockTokens, i % mla::kBlockTokens, latent.data(), rope.data());
  }
  const size_t bytes = static_cast<size_t>(config.token_bytes());
  ThreadPool::global().parallel_for(0, batch * blocks_per, [&](int64_t b0, int64_t b1, int) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t s = 0; s < mla::kBlockTokens; ++s)
        std::memcpy(w.cache->mutable_token(b, s), pool.token((b * 7 + s) % 4, (s * 13 + b) % mla::kBlockTokens), bytes);
  });
  w.block_table = Tensor::empty(DType::kI32, {batch, blocks_per});
  for (int64_t i = 0; i < batch * blocks_per; ++i) w.block_table.mutable_data<int32_t>()[i] = static_cast<int32_t>(i);
  w.seqlens = Tensor::empty(DType::kI32, {batch});
  std::fill_n(w.seqlens.mutable_data<int32_t>(), batch, static_cast<int32_t>(seqlen));
  return w;
}

Tensor random_bf16(Dims shape, uint32_t seed, float scale) {
  Tensor t = Tensor::empty(DType::kBF16, shape);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.mutable_data<bf16>()[i] = float_to_bf16(dist(rng));
  return t;
}

// The non-absorbed decode of one request (batch 1, s_q 1): expand, then attend per head.
struct NaivePeer {
  int64_t heads;
  gemm::PackedWeights w_kv;  // [heads * (nope + v), latent]
  Tensor q;                  // [heads, nope + rope] BF16

  explicit NaivePeer(int64_t h)
      : heads(h), w_kv(gemm::pack_bf16_weights(random_bf16({h * (kNope + kHeadV), kLatent}, 3, 0.05f))),
        q(random_bf16({h, kNope + kRope}, 4, 1.0f)) {}

  void run(const Workload& w, int64_t seqlen, std::vector<float>& out) {
    Tensor latent = Tensor::empty(DType::kBF16, {seqlen, kLatent});
    std::vector<float> rope(static_cast<size_t>(seqlen * kRope)), key(kLatent + kRope);
    for (int64_t t = 0; t < seqlen; ++t) {
      w.cache->read_token(t / mla::kBlockTokens, t % mla::kBlockTokens, key.data());
      convert(key.data(), latent.mutable_data<bf16>() + t * kLatent, kLatent);
      std::copy_n(key.data() + kLatent, kRope, rope.data() + t * kRope);
    }
    Tensor kv = Tensor::empty(DType::kF32, {seqlen, heads * (kNope + kHeadV)});
    gemm::gemm_bf16_nt(latent, w_kv, kv);
    out.assign(static_cast<size_t>(heads * kHeadV), 0.0f);
    const float scale = 1.0f / std::sqrt(float(kNope + kRope));
    ThreadPool::global().parallel_for(0, heads, [&](int64_t h0, int64_t h1, int) {
      std::vector<float> s(static_cast<size_t>(seqlen)), qf(kNope + kRope);
      for (int64_t h = h0; h < h1; ++h) {
        convert(q.data<bf16>() + h * (kNope + kRope), qf.data(), kNope + kRope);
        float mx = -INFINITY;
        for (int64_t t = 0; t < seqlen; ++t) {
          const float* k = kv.data<float>() + t * kv.size(1) + h * (kNope + kHeadV);
          float acc = 0;
          for (int64_t c = 0; c < kNope; ++c) acc += qf[c] * k[c];
          for (int64_t c = 0; c < kRope; ++c) acc += qf[kNope + c] * rope[t * kRope + c];
          mx = std::max(mx, s[t] = acc * scale);
        }
        float sum = 0;
        for (auto& x : s) sum += (x = std::exp(x - mx));
        float* o = out.data() + h * kHeadV;
        for (int64_t t = 0; t < seqlen; ++t) {
          const float* v = kv.data<float>() + t * kv.size(1) + h * (kNope + kHeadV) + kNope;
          for (int64_t c = 0; c < kHeadV; ++c) o[c] += s[t] / sum * v[c];
        }
      }
    });
  }
};

}  // namespace

void run_mla(const Options& options, Reporter& reporter) {
  const bool quick = options.quick;
  const double probe = read_bandwidth_gbs(static_cast<size_t>(dram_working_set_bytes()), quick ? 3 : 7);
  const std::vector<int64_t> batches = quick ? std::vector<int64_t>{8} : std::vector<int64_t>{1, 8, 32, 64};
  const std::vector<int64_t> lengths = quick ? std::vector<int64_t>{1024} : std::vector<int64_t>{1024, 4096, 16384};
  const std::vector<int64_t> head_counts = quick ? std::vector<int64_t>{16} : std::vector<int64_t>{16, 128};
  const std::vector<int64_t> query_lengths = quick ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 2};
  const int workers = ThreadPool::global().num_threads();
  for (int64_t batch : batches)
    for (int64_t seqlen : lengths) {
      double bf16_tokens_per_s[2][2] = {};
      for (mla::KvFormat format : {mla::KvFormat::kBf16, mla::KvFormat::kFp8}) {
        const bool fp8 = format == mla::KvFormat::kFp8;
        if (fp8 && (quick ? false : batch < 8)) continue;
        const Workload w = make_workload(format, batch, seqlen);
        const mla::SplitPlan plan = mla::make_split_plan(w.seqlens, workers);
        const double kv_bytes = double(batch * seqlen) * double(w.cache->config().token_bytes());
        for (size_t hi = 0; hi < head_counts.size(); ++hi)
          for (size_t si = 0; si < query_lengths.size(); ++si) {
            const int64_t h_q = head_counts[hi], s_q = query_lengths[si];
            const std::string name = std::string(fp8 ? "fp8" : "bf16") + " b=" + std::to_string(batch) +
                                     " s_k=" + std::to_string(seqlen) + " h_q=" + std::to_string(h_q) +
                                     " s_q=" + std::to_string(s_q);
            trace::Span span(name, "bench");
            const Tensor q = random_bf16({batch, s_q, h_q, kLatent + kRope}, 9, 1.0f);
            Tensor out = Tensor::empty(DType::kBF16, {batch, s_q, h_q, kLatent});
            Tensor lse = Tensor::empty(DType::kF32, {batch, h_q, s_q});
            const double ns = time_warm([&] {
              mla::mla_decode(q, *w.cache, w.block_table, w.seqlens, plan, 1.0f / 24.0f, true, out, lse);
            }, quick);
            const double flops = double(batch * h_q * s_q) * (2.0 * 576 * seqlen + 2.0 * seqlen * 512);
            reporter.add(make_result("mla", name, "kv_bandwidth", kv_bytes / ns, "GB/s", "read-probe", probe, false));
            const double tokens_per_s = double(batch * seqlen) / ns * 1e9;
            if (!fp8) {
              bf16_tokens_per_s[hi][si] = tokens_per_s;
              if (batch == 1 && s_q == 1) {
                NaivePeer peer(h_q);
                std::vector<float> naive_out;
                const double naive_ns = time_warm([&] { peer.run(w, seqlen, naive_out); }, true);
                reporter.add(make_result("mla", name, "throughput", flops / ns / 1e3, "TFLOPS", "naive-non-absorbed",
                                         flops / naive_ns / 1e3, false));
              }
            } else {
              reporter.add(make_result("mla", name, "kv_tokens", tokens_per_s / 1e6, "Mtok/s", "bf16-cache",
                                       bf16_tokens_per_s[hi][si] / 1e6, false));
            }
          }
      }
    }
}

}  // namespace cachalot::bench
