// The four schedule generators behind make_schedule.
#include <algorithm>
#include <deque>
#include <limits>

#include "core/error.h"
#include "dualpipe/schedule.h"

namespace cachalot::dualpipe {
namespace {

Step single(OpKind kind, int chunk, int micro_batch) { return Step{Op{kind, chunk, micro_batch}, Op{}, false}; }

// 1F1B: rank r runs PP-1-r warm-up forwards, then alternates forward and backward, then drains
// the remaining backwards. At most PP-r micro-batches are in flight on rank r.
std::vector<std::vector<Step>> one_f_one_b(int ranks, int m) {
  std::vector<std::vector<Step>> out(ranks);
  for (int r = 0; r < ranks; ++r) {
    const int warmup = std::min(ranks - 1 - r, m);
    int f = 0, b = 0;
    for (; f < warmup; ++f) out[r].push_back(single(OpKind::kForward, 0, f));
    while (f < m) {
      out[r].push_back(single(OpKind::kForward, 0, f++));
      out[r].push_back(single(OpKind::kBackward, 0, b++));
    }
    while (b < m) out[r].push_back(single(OpKind::kBackward, 0, b++));
  }
  return out;
}

// ZB1P: the zero-bubble paper's rule with 1F1B's memory limit, applied as a list schedule at
// unit F = B_input = W times: a rank runs an input-gradient backward as soon as its gradient is
// there, else a forward if fewer than PP-r micro-batches are in flight, else a pending W (at most
// PP pending, so the weight-gradient stash stays bounded). The order it produces reaches the
// bubble (PP-1)(F+B-2W) for any F, B, W (checked by the simulator tests).
std::vector<std::vector<Step>> zero_bubble_1p(int ranks, int m) {
  std::vector<std::vector<Step>> out(ranks);
  constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  std::vector<int64_t> clock(ranks, 0);
  std::vector<int> forwards(ranks, 0), inputs(ranks, 0);
  std::vector<std::deque<int>> pending_w(ranks);
  // Unit-time completion of each (rank, micro-batch) forward and input backward.
  std::vector<std::vector<int64_t>> f_done(ranks, std::vector<int64_t>(m, kNever));
  std::vector<std::vector<int64_t>> i_done(ranks, std::vector<int64_t>(m, kNever));
  const int64_t total = int64_t{3} * ranks * m;
  for (int64_t done = 0; done < total; ++done) {
    int best_rank = -1, best_kind = 0;
    int64_t best_start = kNever;
    for (int r = 0; r < ranks; ++r) {
      // Candidates in priority order: 0 = input backward, 1 = forward, 2 = weight.
      int64_t start[3] = {kNever, kNever, kNever};
      if (inputs[r] < forwards[r] && static_cast<int>(pending_w[r].size()) < ranks) {
        const int64_t ready = r == ranks - 1 ? 0 : i_done[r + 1][inputs[r]];
        if (ready != kNever) start[0] = std::max(ready, clock[r]);
      }
      if (forwards[r] < m && forwards[r] - inputs[r] < ranks - r) {
        const int64_t ready = r == 0 ? 0 : f_done[r - 1][forwards[r]];
        if (ready != kNever) start[1] = std::max(ready, clock[r]);
      }
      if (!pending_w[r].empty()) start[2] = clock[r];
      for (int k = 0; k < 3; ++k)
        if (start[k] < best_start) best_start = start[k], best_rank = r, best_kind = k;
    }
    CACHALOT_ASSERT(best_rank >= 0);
    const int r = best_rank;
    clock[r] = best_start + 1;
    if (best_kind == 0) {
      const int mb = inputs[r]++;
      i_done[r][mb] = clock[r];
      pending_w[r].push_back(mb);
      out[r].push_back(single(OpKind::kBackwardInput, 0, mb));
    } else if (best_kind == 1) {
      const int mb = forwards[r]++;
      f_done[r][mb] = clock[r];
      out[r].push_back(single(OpKind::kForward, 0, mb));
    } else {
      out[r].push_back(single(OpKind::kBackwardWeight, 0, pending_w[r].front()));
      pending_w[r].pop_front();
    }
  }
  return out;
}

// DualPipe and DualPipeV share one structure (DeepSeek's eight phases). In DualPipe terms: H =
// PP/2 rank pairs, h = min(r, PP-1-r), C = micro-batches per direction; DualPipeV is the same
// with H = ranks, h = r, C = all micro-batches. A "phase" is the rank's own direction: phase 0 is
// chunk 0 on the first half of the ranks and chunk 1 on the second half (DualPipe's mirror).
class DualScheduleBuilder {
 public:
  DualScheduleBuilder(const Layout& layout, int rank) : rank_(rank) {
    v_shape_ = layout.kind == ScheduleKind::kDualPipeV;
    pairs_ = v_shape_ ? layout.ranks : layout.ranks / 2;
    h_ = v_shape_ ? rank : std::min(rank, layout.ranks - 1 - rank);
    per_phase_ = v_shape_ ? layout.micro_batches : layout.micro_batches / 2;
  }

  std::vector<Step> build() {
    const int H = pairs_, h = h_;
    for (int i = 0; i < 2 * (H - h - 1); ++i) push(forward(0));                // 1: nF0
    for (int i = 0; i < h + 1; ++i) push(forward(0)), push(forward(1));       // 2: nF0F1
    for (int i = 0; i < H - h - 1; ++i) {                                     // 3: nB1W1F1 (zero bubble)
      push(backward(1, true));
      push(weight());
      push(forward(1));
    }
    const bool middle = h == H - 1;
    for (int i = 0; i < per_phase_ - 2 * H + h + 1; ++i) {                    // 4: nF0B1F1B0 (main)
      if (i == 0 && middle) {
        // The middle ranks run the first pair apart: the forward's output is what the other
        // half waits for.
        push(forward(0));
        push(backward(1, false));
      } else {
        push_overlapped(forward(0), backward(1, false));
      }
      push_overlapped(forward(1), backward(0, false));
    }
    for (int i = 0; i < H - h - 1; ++i) {                                     // 5: nB1F1B0
      push(backward(1, false));
      push_overlapped(forward(1), backward(0, false));
    }
    bool zero_bubble = false;                                                 // 6: nB1B0, second half split
    for (int i = 0; i < h + 1; ++i) {
      if (i == (h + 1) / 2 && h % 2 == 1) zero_bubble = true;
      push(backward(1, zero_bubble));
      if (i == (h + 1) / 2 && h % 2 == 0) zero_bubble = true;
      push(backward(0, zero_bubble));
    }
    for (int i = 0; i < H - h - 1; ++i) push(weight()), push(backward(0, true));  // 7: nWB0
    for (int i = 0; i < h + 1; ++i) push(weight());                                // 8: nW
    CACHALOT_ASSERT(weights_.empty());
    return std::move(steps_);
  }

 private:
  int chunk_of(int phase) const { return v_shape_ || rank_ < pairs_ ? phase : 1 - phase; }
  int micro_batch(int chunk, int k) const { return v_shape_ ? k : chunk * per_phase_ + k; }

  Op forward(int phase) {
    const int c = chunk_of(phase);
    return Op{OpKind::kForward, c, micro_batch(c, forwards_[c]++)};
  }
  Op backward(int phase, bool split) {
    const int c = chunk_of(phase);
    const Op op{split ? OpKind::kBackwardInput : OpKind::kBackward, c, micro_batch(c, backwards_[c]++)};
    if (split) weights_.push_back(op);
    return op;
  }
  // Weight gradients run in the order their input gradients did (DeepSeek's WeightGradStore).
  Op weight() {
    CACHALOT_ASSERT(!weights_.empty());
    Op op = weights_.front();
    weights_.pop_front();
    op.kind = OpKind::kBackwardWeight;
    return op;
  }
  void push(const Op& op) { steps_.push_back(Step{op, Op{}, false}); }
  void push_overlapped(const Op& f, const Op& b) { steps_.push_back(Step{f, b, true}); }

  int rank_;
  bool v_shape_ = false;
  int pairs_ = 0, h_ = 0, per_phase_ = 0;
  int forwards_[2] = {0, 0}, backwards_[2] = {0, 0};
  std::deque<Op> weights_;
  std::vector<Step> steps_;
};

}  // namespace

Schedule make_schedule(ScheduleKind kind, int ranks, int micro_batches) {
  Schedule s;
  s.layout = make_layout(kind, ranks, micro_batches);
  switch (kind) {
    case ScheduleKind::k1F1B: s.steps = one_f_one_b(ranks, micro_batches); break;
    case ScheduleKind::kZB1P: s.steps = zero_bubble_1p(ranks, micro_batches); break;
    case ScheduleKind::kDualPipe:
    case ScheduleKind::kDualPipeV:
      for (int r = 0; r < ranks; ++r) s.steps.push_back(DualScheduleBuilder(s.layout, r).build());
      break;
  }
  return s;
}

}  // namespace cachalot::dualpipe
