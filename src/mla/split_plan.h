// The split plan of MLA decode (FlashMLA's get_mla_metadata): the batch's work cut into
// contiguous token ranges ("splits") and dealt to workers so each gets about the same cost,
// counted in 64-token blocks plus a fixed 5 blocks per split (the cost of starting one: loading
// the queries, writing a partial result). A long request next to many short ones is cut across
// several workers, so every core works; each split's partial result is merged by its
// log-sum-exp afterwards (combine).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace cachalot::mla {

inline constexpr int64_t kSplitFixedCostBlocks = 5;

struct Split {
  int32_t request = 0;
  int32_t token_begin = 0;  // [token_begin, token_end) of the request's cached tokens
  int32_t token_end = 0;
};

struct SplitPlan {
  std::vector<Split> splits;             // worker w runs splits [worker_begin[w], worker_begin[w + 1])
  std::vector<int32_t> worker_begin;     // num_workers + 1 entries
  std::vector<int32_t> request_splits;   // request r's splits, in token order: indices in `splits`
  std::vector<int32_t> request_begin;    // request r's entries in request_splits: [request_begin[r], [r + 1])
  std::vector<int32_t> seqlens;          // the cache_seqlens the plan was made for
  int num_workers() const { return static_cast<int>(worker_begin.size()) - 1; }
};

// cache_seqlens: I32 [batch], each >= 0. num_workers >= 1 (typically the thread count).
SplitPlan make_split_plan(const Tensor& cache_seqlens, int num_workers);

}  // namespace cachalot::mla
