#include "bench/benches.h"

namespace cachalot::bench {

const std::vector<Bench>& all_benches() {
  static const std::vector<Bench> benches = {
      {"threadpool", "parallel_for hand-over cost (empty and tiny bodies) vs OpenMP and thread spawn",
       run_threadpool},
      {"convert", "bulk float32 <-> BF16/FP8 conversion bandwidth vs memcpy and the portable path",
       run_convert},
  };
  return benches;
}

}  // namespace cachalot::bench
