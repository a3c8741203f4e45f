#include "bench/benches.h"

namespace cachalot::bench {

const std::vector<Bench>& all_benches() {
  static const std::vector<Bench> benches = {
      {"threadpool", "parallel_for hand-over cost (empty and tiny bodies) vs OpenMP and thread spawn",
       run_threadpool},
      {"convert", "bulk float32 <-> BF16/FP8 conversion bandwidth vs memcpy and the portable path",
       run_convert},
      {"gemm", "FP8 block-scaled GEMM on DeepSeek-V3 shapes vs oneDNN BF16, OpenBLAS SGEMM, read bandwidth",
       run_gemm},
      {"mla", "MLA decode over the paged KV cache: KV GB/s vs a read probe, FP8 vs BF16 cache, naive peer",
       run_mla},
      {"model", "the model (random v3-slice): prefill and decode tokens/s vs this machine's roofline",
       run_model},
      {"tokenizer", "DeepSeek-V3 tokenizer encode/decode MB/s on mixed text vs @huggingface/tokenizers (node)",
       run_tokenizer},
      {"serve", "the HTTP server under Poisson load (random mini): tokens/s, TTFT, TPOT, cache hits vs raw model",
       run_serve},
      {"ep", "expert-parallel dispatch/combine over shm ranks (V3 shapes): GB/s and latency vs memcpy and MPI_Alltoallv",
       run_ep},
      {"eplb", "EPLB placement: GPU balancedness on Zipf loads vs no replication, placement time vs sorting the loads",
       run_eplb},
  };
  return benches;
}

}  // namespace cachalot::bench
