// A memory read-bandwidth probe: the roofline memory-bound kernels are measured against, taken
// in the same run as the kernel (never a remembered figure).
#pragma once

#include <cstddef>

namespace cachalot::bench {

// Bytes a working set needs to be streamed from DRAM rather than cache: 1.5x the last-level
// cache the OS reports (this VM reports 508 MiB), clamped to [192 MiB, 768 MiB].
double dram_working_set_bytes();

// Median GB/s of summing a `bytes`-sized buffer with all threads of the global pool, using
// wide loads (AVX-512 where available). Large buffers measure DRAM; small ones, caches.
double read_bandwidth_gbs(size_t bytes, int repeats);

}  // namespace cachalot::bench
