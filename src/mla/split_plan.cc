#include "mla/split_plan.h"

#include <algorithm>

#include "core/error.h"
#include "mla/paged_kv_cache.h"

namespace cachalot::mla {

SplitPlan make_split_plan(const Tensor& cache_seqlens, int num_workers) {
  CACHALOT_CHECK_ARG(cache_seqlens.dtype() == DType::kI32 && cache_seqlens.dim() == 1 && cache_seqlens.is_contiguous(),
                     "mla split plan: cache_seqlens must be contiguous I32 [batch], got {}",
                     cache_seqlens.description());
  CACHALOT_CHECK_ARG(num_workers >= 1, "mla split plan: need at least one worker, got {}", num_workers);
  const int64_t batch = cache_seqlens.size(0);
  SplitPlan plan;
  plan.seqlens.assign(cache_seqlens.data<int32_t>(), cache_seqlens.data<int32_t>() + batch);
  int64_t total = 0;
  for (int64_t r = 0; r < batch; ++r) {
    CACHALOT_CHECK_ARG(plan.seqlens[r] >= 0, "mla split plan: cache_seqlens[{}] = {} is negative", r, plan.seqlens[r]);
    total += (plan.seqlens[r] + kBlockTokens - 1) / kBlockTokens + kSplitFixedCostBlocks;
  }
  // Each worker boundary may cut a request, and each piece pays the fixed cost again: count one
  // such cut per worker, or the last worker collects what the others' cuts pushed past them.
  const int64_t with_cuts = total + num_workers * kSplitFixedCostBlocks;
  const int64_t target = std::max<int64_t>(1, (with_cuts + num_workers - 1) / num_workers);

  // Deal requests in order; a worker that is full moves on to the next, cutting the request.
  int worker = 0;
  int64_t used = 0;
  plan.worker_begin.push_back(0);
  std::vector<std::vector<int32_t>> per_request(static_cast<size_t>(batch));
  for (int64_t r = 0; r < batch; ++r) {
    const int64_t blocks = (plan.seqlens[r] + kBlockTokens - 1) / kBlockTokens;
    int64_t next_block = 0;
    do {
      if (worker + 1 < num_workers && used + kSplitFixedCostBlocks >= target && used > 0) {
        plan.worker_begin.push_back(static_cast<int32_t>(plan.splits.size()));
        ++worker;
        used = 0;
      }
      const bool last_worker = worker + 1 == num_workers;
      const int64_t room = last_worker ? blocks - next_block
                                       : std::max<int64_t>(1, target - used - kSplitFixedCostBlocks);
      const int64_t take = std::min(blocks - next_block, room);
      Split s;
      s.request = static_cast<int32_t>(r);
      s.token_begin = static_cast<int32_t>(next_block * kBlockTokens);
      s.token_end = static_cast<int32_t>(std::min<int64_t>(plan.seqlens[r], (next_block + take) * kBlockTokens));
      per_request[r].push_back(static_cast<int32_t>(plan.splits.size()));
      plan.splits.push_back(s);
      used += take + kSplitFixedCostBlocks;
      next_block += take;
    } while (next_block < blocks);
  }
  while (static_cast<int>(plan.worker_begin.size()) <= num_workers)
    plan.worker_begin.push_back(static_cast<int32_t>(plan.splits.size()));
  plan.request_begin.push_back(0);
  for (const auto& list : per_request) {
    plan.request_splits.insert(plan.request_splits.end(), list.begin(), list.end());
    plan.request_begin.push_back(static_cast<int32_t>(plan.request_splits.size()));
  }
  return plan;
}

}  // namespace cachalot::mla
