// The machine's BF16 dot-product peak, measured in the same run as the benchmark it scales: a
// register-only loop of independent vdpbf16ps (AVX-512 BF16) on every thread of the pool.
// Without AVX-512 BF16 it returns 0 (callers then report no compute roofline).
#pragma once

namespace cachalot::bench {

// Median FLOPs per second (2 per multiply-add) over `repeats` runs.
double bf16_peak_flops(int repeats);

}  // namespace cachalot::bench
