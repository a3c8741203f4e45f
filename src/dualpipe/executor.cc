#include "dualpipe/executor.h"

#include <cmath>

#include "core/error.h"
#include "core/trace.h"
#include "dualpipe/validate.h"

namespace cachalot::dualpipe {
namespace {

// Tags above every activation/gradient tag: mirrored gradients (+chunk) and all-gathers.
int control_tag(const Layout& l, int offset) { return 2 * (l.stages + 1) * l.micro_batches + offset; }
constexpr int kMirrorTag = 0, kLossTag = 2;

}  // namespace

PipelineExecutor::PipelineExecutor(const Schedule& schedule, const ToyModelConfig& config, PeerComm& comm)
    : schedule_(schedule), comm_(comm), config_(config) {
  validate_schedule(schedule);
  CACHALOT_CHECK_ARG(comm.size() == schedule.layout.ranks, "dualpipe: the {} schedule has {} ranks, the group {}",
                     schedule_name(schedule.layout.kind), schedule.layout.ranks, comm.size());
  // MPI promises tags up to 32767 only.
  CACHALOT_CHECK_ARG(control_tag(schedule.layout, 32) <= 32767, "dualpipe: {} micro-batches x {} stages need more message tags than MPI promises",
                     schedule.layout.micro_batches, schedule.layout.stages);
  for (int c = 0; c < schedule.layout.chunks_per_rank; ++c) chunks_.emplace_back(config, schedule.layout.stage_at(comm.rank(), c));
}

int PipelineExecutor::tag(bool gradient, int micro_batch, int from_stage) const {
  const Layout& l = schedule_.layout;
  return ((gradient ? l.stages + 1 : 0) + from_stage) * l.micro_batches + micro_batch;
}

std::vector<float> PipelineExecutor::receive(bool gradient, int micro_batch, int from_stage, int src) {
  if (src == comm_.rank()) {
    auto it = local_.find({gradient, micro_batch, from_stage});
    CACHALOT_ASSERT(it != local_.end());  // validate_schedule ordered the producer first
    std::vector<float> data = std::move(it->second);
    local_.erase(it);
    return data;
  }
  trace::Span span(gradient ? "recv gradient" : "recv activation", "comm");
  span.arg("micro_batch", micro_batch).arg("from_rank", src);
  std::vector<float> data(static_cast<size_t>(config_.tokens) * config_.hidden);
  comm_.recv_floats(src, tag(gradient, micro_batch, from_stage), data);
  return data;
}

void PipelineExecutor::deliver(bool gradient, int micro_batch, int from_stage, int dst, std::vector<float> data) {
  if (dst == comm_.rank()) {
    local_[{gradient, micro_batch, from_stage}] = std::move(data);
    return;
  }
  comm_.send_floats(dst, tag(gradient, micro_batch, from_stage), data);
}

void PipelineExecutor::run(const Op& op, const ToyBatch& batch) {
  const Layout& l = schedule_.layout;
  const int s = l.stage_at(comm_.rank(), op.chunk), mb = op.micro_batch, last = l.stages - 1;
  MlpStage& stage = chunks_[op.chunk];
  trace::Span span(op_label(op, l.chunks_per_rank), "compute");
  span.arg("micro_batch", mb).arg("chunk", op.chunk).arg("stage", s);
  switch (op.kind) {
    case OpKind::kForward: {
      const std::vector<float> x = s == 0 ? batch.inputs[mb] : receive(false, mb, s - 1, l.where(mb, s - 1).rank);
      std::vector<float> y = stage.forward(x, &saved_[{op.chunk, mb}]);
      if (s == last) {
        std::vector<float> grad;
        loss_ += mse_loss(y, batch.targets[mb], l.micro_batches, &grad);
        local_[{true, mb, l.stages}] = std::move(grad);
      } else {
        deliver(false, mb, s, l.where(mb, s + 1).rank, std::move(y));
      }
      break;
    }
    case OpKind::kBackward:
    case OpKind::kBackwardInput: {
      const std::vector<float> dy = s == last ? receive(true, mb, l.stages, comm_.rank()) : receive(true, mb, s + 1, l.where(mb, s + 1).rank);
      auto saved = saved_.extract({op.chunk, mb});
      CACHALOT_ASSERT(!saved.empty());
      MlpStage::WeightWork work;
      std::vector<float> dx = stage.backward_input(dy, std::move(saved.mapped()), &work);
      if (op.kind == OpKind::kBackward)
        stage.backward_weight(work);
      else
        weights_[{op.chunk, mb}] = std::move(work);
      if (s > 0) deliver(true, mb, s, l.where(mb, s - 1).rank, std::move(dx));
      break;
    }
    case OpKind::kBackwardWeight: {
      auto work = weights_.extract({op.chunk, mb});
      CACHALOT_ASSERT(!work.empty());
      stage.backward_weight(work.mapped());
      break;
    }
  }
}

void PipelineExecutor::sum_mirrored_gradients() {
  if (schedule_.layout.copies() == 1) return;
  // DualPipe: stage s lives on chunk 0 of rank s and chunk 1 of rank PP-1-s; each pair swaps
  // its chunks' gradients and adds (a + b == b + a exactly, so the copies stay identical).
  trace::Span span("sum mirrored gradients", "comm");
  const int partner = schedule_.layout.ranks - 1 - comm_.rank();
  for (int c = 0; c < chunks(); ++c) comm_.send_floats(partner, control_tag(schedule_.layout, kMirrorTag + c), chunks_[c].grads());
  for (int c = 0; c < chunks(); ++c) {
    std::span<float> mine = chunks_[c].grads();
    std::vector<float> theirs(mine.size());
    comm_.recv_floats(partner, control_tag(schedule_.layout, kMirrorTag + (1 - c)), theirs);
    for (size_t i = 0; i < mine.size(); ++i) mine[i] += theirs[i];
  }
}

double PipelineExecutor::step(const ToyBatch& batch) {
  const Layout& l = schedule_.layout;
  CACHALOT_CHECK_ARG(static_cast<int>(batch.inputs.size()) == l.micro_batches && batch.targets.size() == batch.inputs.size(),
                     "dualpipe: the batch has {} micro-batches, the schedule {}", batch.inputs.size(), l.micro_batches);
  for (MlpStage& c : chunks_) c.zero_grads();
  loss_ = 0;
  for (const Step& step : schedule_.steps[comm_.rank()]) {
    if (!step.overlapped) {
      run(step.op, batch);
      continue;
    }
    // F&B: on a CPU rank the two run back to back; the span shows the pair.
    trace::Span pair(step_label(step, l.chunks_per_rank), "compute");
    run(step.op, batch);
    run(step.paired, batch);
  }
  CACHALOT_ASSERT(saved_.empty() && weights_.empty() && local_.empty());
  sum_mirrored_gradients();
  double total = 0;
  for (double part : all_gather(comm_, loss_, control_tag(l, kLossTag))) total += part;
  return total;
}

int PipelineExecutor::free_tag(int k) const { return control_tag(schedule_.layout, 16 + k); }

void PipelineExecutor::sgd(float lr) {
  for (MlpStage& c : chunks_) c.sgd(lr);
}

SequentialModel::SequentialModel(const ToyModelConfig& config, int stages) {
  for (int s = 0; s < stages; ++s) stages_.emplace_back(config, s);
}

double SequentialModel::step(const ToyBatch& batch) {
  for (MlpStage& s : stages_) s.zero_grads();
  const int m = static_cast<int>(batch.inputs.size());
  double loss = 0;
  for (int mb = 0; mb < m; ++mb) {
    std::vector<MlpStage::Saved> saved(stages_.size());
    std::vector<float> x = batch.inputs[mb];
    for (size_t s = 0; s < stages_.size(); ++s) x = stages_[s].forward(x, &saved[s]);
    std::vector<float> grad;
    loss += mse_loss(x, batch.targets[mb], m, &grad);
    for (size_t s = stages_.size(); s-- > 0;) {
      MlpStage::WeightWork work;
      grad = stages_[s].backward_input(grad, std::move(saved[s]), &work);
      stages_[s].backward_weight(work);
    }
  }
  return loss;
}

void SequentialModel::sgd(float lr) {
  for (MlpStage& s : stages_) s.sgd(lr);
}

double relative_difference(std::span<const float> a, std::span<const float> b) {
  CACHALOT_CHECK_ARG(a.size() == b.size(), "dualpipe: comparing {} values with {}", a.size(), b.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  if (norm == 0) return diff == 0 ? 0 : INFINITY;
  return std::sqrt(diff / norm);
}

std::vector<double> all_gather(PeerComm& comm, double value, int tag) {
  // Through rank 0: everyone sends it their value, it answers with the full list.
  const int n = comm.size();
  std::vector<double> values(n, 0.0);
  values[comm.rank()] = value;
  const auto bytes = [](std::span<double> v) { return std::as_writable_bytes(v); };
  if (comm.rank() == 0) {
    for (int r = 1; r < n; ++r) comm.recv(r, tag, bytes(std::span(values).subspan(r, 1)));
    for (int r = 1; r < n; ++r) comm.send(r, tag, std::as_bytes(std::span(values)));
  } else {
    comm.send(0, tag, std::as_bytes(std::span(&value, 1)));
    comm.recv(0, tag, bytes(values));
  }
  return values;
}

}  // namespace cachalot::dualpipe
