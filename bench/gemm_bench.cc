// `cachalot bench gemm`: the FP8 GEMMs on DeepSeek-V3's shapes against oneDNN's BF16 matmul
// and OpenBLAS SGEMM on the same (dequantized) weights, plus a DRAM read-bandwidth probe, all
// in one run. Weights are rotated over enough copies (1.5x the reported L3) that every run
// streams them from memory, for us and oneDNN alike (OpenBLAS, 10x slower, gets one copy); activations arrive quantized (as from the previous
// layer) and the timed call includes decoding them.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <thread>
#include <vector>

#include "bench/bandwidth_probe.h"
#include "bench/benches.h"
#include "bench/gemm_peers.h"
#include "core/convert.h"
#include "core/trace.h"
#include "gemm/gemm.h"
#include "gemm/quantize.h"

namespace cachalot::bench {
namespace {

using gemm::ceil_div;
using gemm::Fp8Tensor;
using gemm::PackedWeights;

void settle() { std::this_thread::sleep_for(std::chrono::milliseconds(200)); }

double time_call(const std::function<void()>& fn, double budget_s, bool quick) {
  return median_ns_warm(fn, budget_s, quick ? 9 : 51);
}

// Random FP8 weights (no NaN codes) with block scales around 1e-3.
Fp8Tensor random_fp8_weights(int64_t n, int64_t k, uint64_t seed) {
  Fp8Tensor w{Tensor::empty(DType::kF8E4M3, {n, k}), Tensor::empty(DType::kF32, {ceil_div(n, 128), ceil_div(k, 128)})};
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  auto* q = reinterpret_cast<uint8_t*>(w.data.mutable_raw_data());
  for (int64_t i = 0; i < n * k; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const uint8_t code = static_cast<uint8_t>(x >> 24);
    q[i] = (code & 0x7f) == 0x7f ? 0 : code;
  }
  for (int64_t i = 0; i < w.scales.numel(); ++i) w.scales.mutable_data<float>()[i] = 1e-3f * (1.0f + 0.5f * std::sin(float(i)));
  return w;
}

Tensor to_bf16(const Tensor& f32) {
  Tensor out = Tensor::empty(DType::kBF16, f32.shape());
  convert(f32.data<float>(), out.mutable_data<bf16>(), static_cast<size_t>(f32.numel()));
  return out;
}

struct Activations {
  Fp8Tensor fp8;
  Tensor bf16;  // the same values, for oneDNN
  Tensor f32;   // for OpenBLAS
};

Activations random_activations(int64_t m, int64_t k, uint32_t seed) {
  Tensor x = Tensor::empty(DType::kF32, {m, k});
  uint64_t s = seed + 12345;
  for (int64_t i = 0; i < m * k; ++i) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x.mutable_data<float>()[i] = static_cast<float>(static_cast<int64_t>(s % 2001) - 1000) / 500.0f;
  }
  Activations a{gemm::quantize_activations(x), {}, {}};
  a.f32 = gemm::dequantize_activations(a.fp8.data, a.fp8.scales);
  a.bf16 = to_bf16(a.f32);
  return a;
}

struct WeightCopies {
  std::vector<PackedWeights> packed;
  std::vector<std::unique_ptr<OneDnnBf16Matmul>> onednn;  // per M, rebuilt per case
  std::vector<Tensor> bf16, f32;
};

void bench_dense(int64_t n, int64_t k, const std::vector<int64_t>& ms, double probe_gbs, bool quick,
                 Reporter& reporter) {
  const double weight_bytes = double(n) * double(k) + double(ceil_div(n, 128) * ceil_div(k, 128)) * 4;
  const int copies = std::max(1, static_cast<int>(std::ceil(dram_working_set_bytes() / weight_bytes)));
  WeightCopies w;
  for (int c = 0; c < copies; ++c) {
    const Fp8Tensor raw = random_fp8_weights(n, k, static_cast<uint64_t>(n * 31 + k + c));
    w.packed.push_back(gemm::pack_fp8_weights(raw.data, raw.scales));
    const Tensor f32 = gemm::dequantize_weights(raw.data, raw.scales);
    w.bf16.push_back(to_bf16(f32));
    if (c == 0) w.f32.push_back(f32);  // OpenBLAS is compute-bound here: one copy suffices
  }
  for (int64_t m : ms) {
    const std::string name = "fp8 m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
    trace::Span span(name, "bench");
    const Activations a = random_activations(m, k, static_cast<uint32_t>(m + n));
    Tensor d = Tensor::empty(DType::kBF16, {m, n});
    const double flops = 2.0 * double(m) * double(n) * double(k);
    const double budget = quick ? 0.1 : 0.5;
    int turn = 0;
    settle();
    const double ours = time_call([&] {
      gemm::gemm_fp8_nt(a.fp8.data, a.fp8.scales, w.packed[turn++ % copies], d);
    }, budget, quick);

    std::vector<std::unique_ptr<OneDnnBf16Matmul>> dnn;
    for (int c = 0; c < copies; ++c)
      dnn.push_back(std::make_unique<OneDnnBf16Matmul>(m, n, k, reinterpret_cast<const uint16_t*>(w.bf16[c].data<bf16>())));
    Tensor d_dnn = Tensor::empty(DType::kBF16, {m, n});
    settle();
    const double onednn = time_call([&] {
      dnn[turn++ % copies]->run(reinterpret_cast<const uint16_t*>(a.bf16.data<bf16>()),
                                reinterpret_cast<uint16_t*>(d_dnn.mutable_data<bf16>()));
    }, budget, quick);
    dnn.clear();

    Tensor d_blas = Tensor::empty(DType::kF32, {m, n});
    settle();
    const double blas = time_call([&] {
      openblas_sgemm_nt(m, n, k, a.f32.data<float>(), w.f32[turn++ % w.f32.size()].data<float>(),
                        d_blas.mutable_data<float>());
    }, budget, quick);

    reporter.add(make_result("gemm", name, "throughput", flops / ours / 1e3, "TFLOPS", "onednn-bf16",
                             flops / onednn / 1e3, false));
    reporter.add(make_result("gemm", name, "throughput", flops / ours / 1e3, "TFLOPS", "openblas-sgemm",
                             flops / blas / 1e3, false));
    reporter.add(make_result("gemm", name, "weight_bandwidth", weight_bytes / ours, "GB/s", "read-probe",
                             probe_gbs, false));
  }
}

// MoE layouts: G experts of [n, k]; masked with `rows` valid rows per expert, or contiguous with
// `rows` rows per expert. Peer: one oneDNN matmul per expert.
void bench_grouped(bool masked, int64_t groups, int64_t rows, int64_t n, int64_t k, double probe_gbs, bool quick,
                   Reporter& reporter) {
  const std::string name = std::string(masked ? "fp8 masked" : "fp8 contiguous") + " groups=" +
                           std::to_string(groups) + " m/group=" + std::to_string(rows) + " n=" + std::to_string(n) +
                           " k=" + std::to_string(k);
  trace::Span span(name, "bench");
  Tensor b = Tensor::empty(DType::kF8E4M3, {groups, n, k});
  Tensor sb = Tensor::empty(DType::kF32, {groups, ceil_div(n, 128), ceil_div(k, 128)});
  std::vector<std::unique_ptr<OneDnnBf16Matmul>> dnn;
  for (int64_t g = 0; g < groups; ++g) {
    const Fp8Tensor raw = random_fp8_weights(n, k, static_cast<uint64_t>(g + 7));
    std::copy_n(static_cast<const uint8_t*>(raw.data.raw_data()), n * k, static_cast<uint8_t*>(b.mutable_raw_data()) + g * n * k);
    std::copy_n(raw.scales.data<float>(), raw.scales.numel(), sb.mutable_data<float>() + g * raw.scales.numel());
    const Tensor w16 = to_bf16(gemm::dequantize_weights(raw.data, raw.scales));
    dnn.push_back(std::make_unique<OneDnnBf16Matmul>(rows, n, k, reinterpret_cast<const uint16_t*>(w16.data<bf16>())));
  }
  const PackedWeights packed = gemm::pack_fp8_weights(b, sb);
  const Activations a = random_activations(groups * rows, k, 99);
  Tensor d = Tensor::empty(DType::kBF16, {groups * rows, n});
  std::function<void()> ours_fn;
  Tensor a3, sa3, counts, idx, d3;
  if (masked) {
    // Decode layout: M_max = 2 x rows, half of each group's slots used.
    const int64_t m_max = 2 * rows;
    a3 = Tensor::zeros(DType::kF8E4M3, {groups, m_max, k});
    sa3 = Tensor::zeros(DType::kF32, {groups, m_max, ceil_div(k, 128)});
    for (int64_t g = 0; g < groups; ++g) {
      std::copy_n(static_cast<const uint8_t*>(a.fp8.data.raw_data()) + g * rows * k, rows * k,
                  static_cast<uint8_t*>(a3.mutable_raw_data()) + g * m_max * k);
      std::copy_n(a.fp8.scales.data<float>() + g * rows * ceil_div(k, 128), rows * ceil_div(k, 128),
                  sa3.mutable_data<float>() + g * m_max * ceil_div(k, 128));
    }
    counts = Tensor::empty(DType::kI32, {groups});
    std::fill_n(counts.mutable_data<int32_t>(), groups, static_cast<int32_t>(rows));
    d3 = Tensor::empty(DType::kBF16, {groups, m_max, n});
    ours_fn = [&] { gemm::gemm_fp8_grouped_masked(a3, sa3, packed, counts, d3); };
  } else {
    idx = Tensor::empty(DType::kI32, {groups * rows});
    for (int64_t r = 0; r < groups * rows; ++r) idx.mutable_data<int32_t>()[r] = static_cast<int32_t>(r / rows);
    ours_fn = [&] { gemm::gemm_fp8_grouped_contiguous(a.fp8.data, a.fp8.scales, packed, idx, d); };
  }
  const double budget = quick ? 0.1 : 0.5;
  settle();
  const double ours = time_call(ours_fn, budget, quick);
  settle();
  const double onednn = time_call([&] {
    for (int64_t g = 0; g < groups; ++g)
      dnn[g]->run(reinterpret_cast<const uint16_t*>(a.bf16.data<bf16>() + g * rows * k),
                  reinterpret_cast<uint16_t*>(d.mutable_data<bf16>() + g * rows * n));
  }, budget, quick);
  const double flops = 2.0 * double(groups * rows) * double(n) * double(k);
  const double bytes = double(packed.bytes());
  reporter.add(make_result("gemm", name, "throughput", flops / ours / 1e3, "TFLOPS", "onednn-bf16", flops / onednn / 1e3,
                           false));
  reporter.add(make_result("gemm", name, "weight_bandwidth", bytes / ours, "GB/s", "read-probe", probe_gbs, false));
}

}  // namespace

void run_gemm(const Options& options, Reporter& reporter) {
  const bool quick = options.quick;
  const double probe = read_bandwidth_gbs(static_cast<size_t>(dram_working_set_bytes()), quick ? 3 : 9);
  const std::vector<std::pair<int64_t, int64_t>> shapes =
      quick ? std::vector<std::pair<int64_t, int64_t>>{{2112, 7168}}
            : std::vector<std::pair<int64_t, int64_t>>{{2112, 7168}, {24576, 1536}, {32768, 512},
                                                       {7168, 16384}, {4096, 7168}, {7168, 2048}};
  const std::vector<int64_t> ms = quick ? std::vector<int64_t>{1, 128} : std::vector<int64_t>{1, 16, 64, 128, 1024};
  for (const auto& [n, k] : shapes) bench_dense(n, k, ms, probe, quick, reporter);
  if (quick) {
    bench_grouped(true, 4, 8, 512, 1024, probe, quick, reporter);
    return;
  }
  bench_grouped(true, 8, 16, 4096, 7168, probe, quick, reporter);
  bench_grouped(true, 32, 16, 7168, 2048, probe, quick, reporter);
  bench_grouped(false, 8, 256, 4096, 7168, probe, quick, reporter);
  bench_grouped(false, 32, 128, 7168, 2048, probe, quick, reporter);
}

}  // namespace cachalot::bench
