// Bulk conversion bandwidth (bytes read + written per second) of the dispatched kernels, beside
// memcpy of the same number of bytes (the memory-bandwidth peer) and the portable path.
#include <cstring>
#include <random>
#include <vector>

#include "bench/benches.h"
#include "core/convert.h"
#include "core/isa.h"
#include "core/trace.h"

namespace cachalot::bench {
namespace {

template <typename Src, typename Dst>
void bench_one(const std::string& name, const std::vector<Src>& src, std::vector<Dst>& dst, int repeats,
               Reporter& reporter) {
  trace::Span span("convert " + name, "bench");
  const size_t n = src.size();
  const double bytes = static_cast<double>(n) * (sizeof(Src) + sizeof(Dst));
  std::vector<char> a(n * sizeof(Src)), b(n * sizeof(Src));
  const double memcpy_ns = median_ns([&] { std::memcpy(b.data(), a.data(), a.size()); }, repeats, 1);
  // memcpy moves sizeof(Src) in and out per element: compare bandwidth, not time.
  const double memcpy_gbs = 2.0 * static_cast<double>(a.size()) / memcpy_ns;
  const double portable_ns =
      median_ns([&] { convert_kernels::portable::convert(src.data(), dst.data(), n); }, repeats, 1);
  const double ours_ns = median_ns([&] { convert(src.data(), dst.data(), n); }, repeats, 1);
  const std::string label = name + " n=" + std::to_string(n) + " isa=" + std::string(isa_name(active_isa()));
  reporter.add(make_result("convert", label, "bandwidth", bytes / ours_ns, "GB/s", "memcpy", memcpy_gbs, false));
  reporter.add(make_result("convert", label, "bandwidth", bytes / ours_ns, "GB/s", "portable",
                           bytes / portable_ns, false));
}

}  // namespace

void run_convert(const Options& options, Reporter& reporter) {
  const size_t n = options.quick ? (1u << 16) : (1u << 24);  // 16M floats: far beyond the caches
  const int repeats = options.quick ? 3 : 11;
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 10.0f);
  std::vector<float> f32(n);
  for (auto& x : f32) x = dist(rng);
  std::vector<bf16> b16(n);
  std::vector<fp8_e4m3> e4m3(n);
  std::vector<float> back(n);
  convert(f32.data(), b16.data(), n);
  convert(f32.data(), e4m3.data(), n);
  bench_one("f32->bf16", f32, b16, repeats, reporter);
  bench_one("bf16->f32", b16, back, repeats, reporter);
  bench_one("f32->e4m3", f32, e4m3, repeats, reporter);
  bench_one("e4m3->f32", e4m3, back, repeats, reporter);
  bench_one("e4m3->bf16", e4m3, b16, repeats, reporter);
}

}  // namespace cachalot::bench
