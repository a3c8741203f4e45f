// The executor: one pipeline rank running a schedule for real on the toy model (mlp_stage.h).
// Forwards receive their input from the previous stage's rank (or the batch, at stage 0) and
// send their output on; backwards do the reverse; the last stage's forward computes the loss
// and its gradient. Input-half backwards leave their weight half for a later W. After the
// schedule, DualPipe's two copies of each stage add their gradients (rank r with PP-1-r), and
// the loss is summed over ranks, so the step equals a sequential one up to rounding.
//
//   run_local_peers(4, timeout, [&](PeerComm& comm) {
//     PipelineExecutor ex(schedule, config, comm);
//     double loss = ex.step(batch);
//     ex.sgd(0.05f);
//   });
#pragma once

#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "dualpipe/mlp_stage.h"
#include "dualpipe/peer_comm.h"
#include "dualpipe/schedule.h"

namespace cachalot::dualpipe {

class PipelineExecutor {
 public:
  // Validates the schedule; comm.size() must be its rank count.
  PipelineExecutor(const Schedule& schedule, const ToyModelConfig& config, PeerComm& comm);

  // One training step over `batch` (all micro-batches; every rank gets the same batch and uses
  // the parts its stages need). Returns the batch's mean loss, the same on every rank.
  double step(const ToyBatch& batch);
  void sgd(float lr);

  int chunks() const { return static_cast<int>(chunks_.size()); }
  const MlpStage& chunk(int c) const { return chunks_[c]; }
  int stage_of_chunk(int c) const { return schedule_.layout.stage_at(comm_.rank(), c); }
  // Tags the executor never uses, for the caller's own messages on the same group.
  int free_tag(int k) const;

 private:
  using Key = std::tuple<bool, int, int>;  // gradient?, micro-batch, producing stage
  void run(const Op& op, const ToyBatch& batch);
  std::vector<float> receive(bool gradient, int micro_batch, int from_stage, int src);
  void deliver(bool gradient, int micro_batch, int from_stage, int dst, std::vector<float> data);
  int tag(bool gradient, int micro_batch, int from_stage) const;
  void sum_mirrored_gradients();

  const Schedule& schedule_;
  PeerComm& comm_;
  ToyModelConfig config_;
  std::vector<MlpStage> chunks_;
  std::map<std::pair<int, int>, MlpStage::Saved> saved_;        // (chunk, micro-batch)
  std::map<std::pair<int, int>, MlpStage::WeightWork> weights_;  // (chunk, micro-batch)
  std::map<Key, std::vector<float>> local_;                     // hand-offs inside this rank
  double loss_ = 0;
};

// The reference: every stage in one process, each micro-batch forward through all stages and
// straight back (full backwards), gradients summed over micro-batches.
class SequentialModel {
 public:
  SequentialModel(const ToyModelConfig& config, int stages);
  double step(const ToyBatch& batch);
  void sgd(float lr);
  const MlpStage& stage(int s) const { return stages_[s]; }

 private:
  std::vector<MlpStage> stages_;
};

// ||a - b|| / ||b|| (0 when both are zero).
double relative_difference(std::span<const float> a, std::span<const float> b);

// Every rank's `value`, in rank order, on every rank.
std::vector<double> all_gather(PeerComm& comm, double value, int tag);

}  // namespace cachalot::dualpipe
