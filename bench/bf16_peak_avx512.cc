#include <immintrin.h>

#include <cstdint>

#include "bench/bf16_peak.h"
#include "core/isa.h"

namespace cachalot::bench {
CACHALOT_AVX512_BEGIN

// 12 independent accumulators hide vdpbf16ps latency; returns a value so nothing is dropped.
__attribute__((noinline)) float bf16_dot_loop(int64_t iterations) {
  __m512 acc[12];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80);  // 1.0 in BF16
  const __m512bh y = (__m512bh)_mm512_set1_epi16(0x0001);  // a tiny value: no overflow
  for (int64_t i = 0; i < iterations; ++i)
    for (auto& a : acc) a = _mm512_dpbf16_ps(a, x, y);
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

CACHALOT_AVX512_END

}  // namespace cachalot::bench
