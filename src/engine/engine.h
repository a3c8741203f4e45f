// The serving engine: continuous batching over one model. Requests queue up; each engine step
// admits waiting requests while KV blocks allow (reusing cached prefix blocks), then runs one
// forward over every running sequence: one token for each decoding sequence and chunks of
// prompts (chunked prefill) within a per-step token budget, so decode latency stays bounded
// while long prompts prefill. When a sequence needs a block and none is left, the newest
// running sequence is preempted (its blocks freed; it is recomputed later, mostly from the
// prefix cache). Tokens stream back through each request's RequestStream.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

#include "engine/block_manager.h"
#include "engine/expert_load_window.h"
#include "engine/metrics.h"
#include "engine/request.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace cachalot::engine {

struct EngineOptions {
  int64_t kv_blocks = 0;            // KV cache size in blocks of 64 tokens (see blocks_for_budget)
  // Tokens per step (decode tokens + prefill chunks). On CPU a step of 512 prompt tokens takes
  // ~0.5 s on the mini preset and seconds on real dimensions: decoding sequences wait that long.
  int64_t max_batch_tokens = 512;
  int64_t max_running = 64;         // sequences in the running batch
  int64_t max_waiting = 256;        // queued requests before submit() refuses
  bool prefix_caching = true;
  // EPLB (with expert parallelism): expert loads are counted over the last eplb_window_steps
  // steps; a rebalance places eplb_slots expert slots per MoE layer from them (0: the routed
  // experts plus one redundant slot per EP rank), every eplb_interval_steps steps (0: only when
  // request_rebalance() asks).
  int64_t eplb_window_steps = 1000;
  int64_t eplb_interval_steps = 0;
  int64_t eplb_slots = 0;
};

// Blocks of 64 tokens a budget of `gigabytes` holds for this model's cache.
int64_t blocks_for_budget(const model::Model& model, double gigabytes);

class Engine {
 public:
  // tokenizer may be null (token ids only; stop strings then refused).
  Engine(std::shared_ptr<const model::Model> model, std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
         EngineOptions options);
  ~Engine();  // cancels what is left and stops the engine thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Error(kInvalidArgument) for a request that can never run (empty prompt, ids
  // outside the vocabulary, prompt + max_tokens past the context or the KV pool, bad sampling,
  // stop strings without a tokenizer); Error(kResourceExhausted) when the queue is full or the
  // engine is draining.
  std::shared_ptr<RequestStream> submit(RequestParams params);

  // Stops admitting new requests, lets the ones in flight finish for up to `grace`, then cancels
  // the rest. Returns when nothing is left.
  void drain(std::chrono::milliseconds grace);
  bool draining() const { return draining_.load(); }

  // Rebalances the experts (EPLB over the load window) at the start of the next step; the new
  // placement takes effect once every EP rank has prepared it. Error(kInvalidArgument) without
  // expert parallelism.
  void request_rebalance();

  const Metrics& metrics() const { return metrics_; }
  const model::ModelConfig& config() const { return model_->config(); }
  const model::Model& model() const { return *model_; }
  const tokenizer::Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const EngineOptions& options() const { return options_; }

 private:
  struct Sequence;
  using SequencePtr = std::unique_ptr<Sequence>;

  void loop();
  void step();
  void take_incoming();
  void drop_cancelled();
  void admit();
  // The partition (attention rank) for a sequence needing `blocks_needed` fresh blocks; -1 if
  // none has room.
  int64_t place_sequence(int64_t blocks_needed) const;
  std::vector<int64_t> running_per_partition() const;
  bool ensure_blocks(Sequence& seq, int64_t positions);
  void preempt_newest();
  // Gives the sequence's blocks back; it will start over from the prefix cache.
  void release_blocks(Sequence& seq);
  void finish(Sequence& seq, FinishReason reason, std::string error = {});
  void emit_token(Sequence& seq, const float* logits);
  void publish_metrics(int64_t batch_sequences, int64_t batch_tokens);
  void rebalance_experts();
  void publish_expert_loads();

  std::shared_ptr<const model::Model> model_;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer_;
  EngineOptions options_;
  model::KvCache cache_;
  BlockManager blocks_;
  Metrics metrics_;

  std::mutex mutex_;                 // guards incoming_ and stop_
  std::condition_variable wake_;     // new work or stop
  std::condition_variable idle_;     // nothing left (for drain)
  std::deque<SequencePtr> incoming_;
  bool stop_ = false;
  std::atomic<bool> draining_{false};
  std::atomic<bool> cancel_all_{false};  // drain's grace ran out
  std::atomic<int64_t> outstanding_{0};  // submitted and not finished
  std::atomic<bool> rebalance_requested_{false};

  // Engine thread only.
  std::deque<SequencePtr> waiting_;
  std::vector<SequencePtr> running_;  // in admission order
  ExpertLoadWindow expert_loads_;
  int64_t steps_ = 0;
  std::thread thread_;
};

}  // namespace cachalot::engine
