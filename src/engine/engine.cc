#include "engine/engine.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.h"
#include "core/log.h"
#include "core/trace.h"
#include "engine/text_output.h"
#include "eplb/eplb.h"

namespace cachalot::engine {

using Clock = std::chrono::steady_clock;

struct Engine::Sequence {
  RequestParams params;
  std::shared_ptr<RequestStream> stream;
  std::vector<int32_t> tokens;  // prompt, then generated
  int64_t prompt_len;
  int64_t computed = 0;           // tokens whose KV is in the cache
  std::vector<int32_t> blocks;    // block table
  int64_t partition = -1;         // the attention rank whose blocks it holds (-1: none yet)
  std::vector<uint64_t> hashes;   // chain hashes of the committed full blocks
  int64_t cached_prompt_tokens = -1;  // set at first admission
  int64_t generated = 0;
  bool finished = false;  // finish() ran; the step removes it from running_
  model::Sampler sampler;
  TextOutput text;
  Clock::time_point arrival, last_token;

  Sequence(RequestParams p, const tokenizer::Tokenizer* tok)
      : params(std::move(p)), stream(std::make_shared<RequestStream>()), tokens(params.prompt),
        prompt_len(static_cast<int64_t>(params.prompt.size())), sampler(params.sampling), text(tok, params.stop),
        arrival(Clock::now()) {}
};

int64_t blocks_for_budget(const model::Model& model, double gigabytes) {
  const double bytes_per_block = static_cast<double>(model.kv_bytes_per_token()) * BlockManager::kBlockTokens;
  return static_cast<int64_t>(gigabytes * 1e9 / bytes_per_block);
}

Engine::Engine(std::shared_ptr<const model::Model> model, std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
               EngineOptions options)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), options_(options),
      cache_(model_->make_kv_cache(options.kv_blocks)), blocks_(cache_.num_blocks(), cache_.partitions),
      expert_loads_(options.eplb_window_steps) {
  CACHALOT_CHECK_ARG(options.eplb_window_steps >= 1 && options.eplb_interval_steps >= 0 && options.eplb_slots >= 0,
                     "eplb: window {} steps, interval {} steps, {} slots: the window must be >= 1, the others >= 0",
                     options.eplb_window_steps, options.eplb_interval_steps, options.eplb_slots);
  CACHALOT_CHECK_ARG(options.max_batch_tokens >= 1, "max_batch_tokens must be >= 1");
  CACHALOT_CHECK_ARG(options.max_running >= 1, "max_running must be >= 1");
  metrics_.update([&](MetricsSnapshot& m) { m.rank_admitted.assign(static_cast<size_t>(blocks_.partitions()), 0); });
  publish_metrics(0, 0);
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<RequestStream> Engine::submit(RequestParams p) {
  CACHALOT_CHECK_ARG(p.max_tokens >= 1, "max_tokens must be >= 1, got {}", p.max_tokens);
  model::check_sequence(model_->config(), p.prompt, p.max_tokens);
  const int64_t need = BlockManager::blocks_for(static_cast<int64_t>(p.prompt.size()) + p.max_tokens);
  CACHALOT_CHECK_ARG(need <= blocks_.blocks_per_partition(),
                     "the prompt plus max_tokens needs {} KV blocks but the cache has {}{}; raise --kv-cache-gb", need,
                     blocks_.blocks_per_partition(), blocks_.partitions() > 1 ? " per attention rank" : "");
  model::validate(p.sampling);
  CACHALOT_CHECK_ARG(p.stop.empty() || tokenizer_, "stop strings need the model's tokenizer.json");
  CACHALOT_CHECK_ARG(p.top_logprobs <= 20, "top_logprobs must be at most 20, got {}", p.top_logprobs);
  if (draining_) raise(ErrorKind::kResourceExhausted, "the server is shutting down");

  std::unique_lock lock(mutex_);
  // outstanding_ counts every request submitted and not finished: queued, waiting or running.
  if (outstanding_.load() >= options_.max_waiting + options_.max_running) {
    lock.unlock();
    metrics_.update([](MetricsSnapshot& m) { ++m.requests_rejected; });
    raise(ErrorKind::kResourceExhausted, "the request queue is full ({} requests); retry later",
          options_.max_waiting + options_.max_running);
  }
  auto seq = std::make_unique<Sequence>(std::move(p), tokenizer_.get());
  auto stream = seq->stream;
  incoming_.push_back(std::move(seq));
  ++outstanding_;
  lock.unlock();
  wake_.notify_one();
  return stream;
}

void Engine::drain(std::chrono::milliseconds grace) {
  draining_ = true;
  std::unique_lock lock(mutex_);
  if (!idle_.wait_for(lock, grace, [&] { return outstanding_.load() == 0; })) {
    log::warn("engine: {} requests still running after the grace period; cancelling them", outstanding_.load());
    for (auto& s : incoming_) s->stream->cancel();
    lock.unlock();
    // The engine thread owns waiting_/running_; ask it to cancel everything on its next step.
    cancel_all_ = true;
    wake_.notify_all();
    lock.lock();
    idle_.wait(lock, [&] { return outstanding_.load() == 0; });
  }
}

void Engine::loop() {
  while (true) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || !incoming_.empty() || !waiting_.empty() || !running_.empty(); });
      if (stop_) break;
    }
    try {
      step();
    } catch (const std::exception& e) {
      // A failed forward fails the batch, not the server.
      log::error("engine step failed: {}", e.what());
      for (auto& seq : running_) finish(*seq, FinishReason::kError, e.what());
      running_.clear();
    }
  }
  // Shutting down: everything left is cancelled.
  take_incoming();
  for (auto& seq : running_) finish(*seq, FinishReason::kCancelled);
  for (auto& seq : waiting_) finish(*seq, FinishReason::kCancelled);
  running_.clear();
  waiting_.clear();
}

void Engine::take_incoming() {
  std::lock_guard lock(mutex_);
  while (!incoming_.empty()) {
    waiting_.push_back(std::move(incoming_.front()));
    incoming_.pop_front();
  }
}

void Engine::release_blocks(Sequence& seq) {
  blocks_.release(seq.blocks);
  seq.blocks.clear();
  seq.hashes.clear();
  seq.computed = 0;
  seq.partition = -1;
}

void Engine::finish(Sequence& seq, FinishReason reason, std::string error) {
  release_blocks(seq);
  seq.finished = true;
  FinishEvent e;
  e.reason = reason;
  e.text = reason == FinishReason::kStop || reason == FinishReason::kLength ? seq.text.finish() : std::string();
  e.error = std::move(error);
  e.prompt_tokens = seq.prompt_len;
  e.completion_tokens = seq.generated;
  e.cached_prompt_tokens = std::max<int64_t>(seq.cached_prompt_tokens, 0);
  seq.stream->push_finish(std::move(e));
  const double seconds = std::chrono::duration<double>(Clock::now() - seq.arrival).count();
  metrics_.update([&](MetricsSnapshot& m) {
    if (reason == FinishReason::kCancelled) ++m.requests_cancelled;
    else if (reason == FinishReason::kError) ++m.requests_failed;
    else ++m.requests_finished;
  });
  if (reason == FinishReason::kStop || reason == FinishReason::kLength) metrics_.observe_e2e(seconds);
  if (--outstanding_ == 0) {
    std::lock_guard lock(mutex_);
    idle_.notify_all();
  }
}

void Engine::drop_cancelled() {
  const bool all = cancel_all_.exchange(false);
  auto cancelled = [&](const SequencePtr& s) {
    if (!all && !s->stream->cancelled()) return false;
    finish(*s, FinishReason::kCancelled);
    return true;
  };
  std::erase_if(running_, cancelled);
  std::erase_if(waiting_, cancelled);
}

std::vector<int64_t> Engine::running_per_partition() const {
  std::vector<int64_t> running(static_cast<size_t>(blocks_.partitions()), 0);
  for (const auto& s : running_)
    if (s->partition >= 0) ++running[static_cast<size_t>(s->partition)];
  return running;
}

int64_t Engine::place_sequence(int64_t blocks_needed) const {
  // The attention rank with the fewest running sequences that has room (ties: the most room).
  const std::vector<int64_t> running = running_per_partition();
  int64_t best = -1;
  for (int64_t p = 0; p < blocks_.partitions(); ++p) {
    if (blocks_.available(p) < blocks_needed) continue;
    if (best < 0 || running[p] < running[best] ||
        (running[p] == running[best] && blocks_.available(p) > blocks_.available(best)))
      best = p;
  }
  return best;
}

void Engine::admit() {
  while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < options_.max_running) {
    Sequence& seq = *waiting_.front();
    const int64_t blocks_needed = BlockManager::blocks_for(static_cast<int64_t>(seq.tokens.size()));
    if (seq.blocks.empty() && options_.prefix_caching) {
      seq.blocks = blocks_.match_prefix(seq.tokens, seq.hashes);
      seq.computed = static_cast<int64_t>(seq.blocks.size()) * BlockManager::kBlockTokens;
      if (!seq.blocks.empty()) seq.partition = blocks_.partition_of(seq.blocks[0]);
    }
    // A matched prefix ties the sequence to its attention rank; when that rank has no room but
    // another does, recomputing the prefix there beats waiting.
    const int64_t elsewhere = place_sequence(blocks_needed);
    if (!seq.blocks.empty() &&
        blocks_needed - static_cast<int64_t>(seq.blocks.size()) > blocks_.available(seq.partition) && elsewhere >= 0)
      release_blocks(seq);
    if (seq.blocks.empty()) seq.partition = elsewhere;
    // Admit only when the rest of what is already known (prompt and tokens so far) fits now.
    if (seq.partition < 0 ||
        blocks_needed - static_cast<int64_t>(seq.blocks.size()) > blocks_.available(seq.partition)) {
      release_blocks(seq);  // hand the matched blocks back while we wait
      break;
    }
    metrics_.update([&](MetricsSnapshot& m) { ++m.rank_admitted[static_cast<size_t>(seq.partition)]; });
    if (seq.cached_prompt_tokens < 0) {  // first admission (not a readmission after preemption)
      seq.cached_prompt_tokens = std::min(seq.computed, seq.prompt_len);
      metrics_.update([&](MetricsSnapshot& m) {
        m.prompt_tokens += static_cast<uint64_t>(seq.prompt_len);
        m.prompt_cache_hit_tokens += static_cast<uint64_t>(seq.cached_prompt_tokens);
      });
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

bool Engine::ensure_blocks(Sequence& seq, int64_t positions) {
  const auto need = static_cast<std::size_t>(BlockManager::blocks_for(positions));
  while (seq.blocks.size() < need) {
    const auto block = blocks_.allocate(seq.partition);
    if (!block) return false;
    seq.blocks.push_back(*block);
  }
  return true;
}

void Engine::preempt_newest() {
  SequencePtr victim = std::move(running_.back());
  running_.pop_back();
  release_blocks(*victim);
  metrics_.update([](MetricsSnapshot& m) { ++m.preemptions; });
  waiting_.push_front(std::move(victim));
}

void Engine::request_rebalance() {
  CACHALOT_CHECK_ARG(model_->ep_ranks() > 1, "eplb: the model runs without expert parallelism (start with --ep N)");
  rebalance_requested_ = true;
}

void Engine::rebalance_experts() {
  const std::vector<float> loads = expert_loads_.totals();
  if (loads.empty() || std::all_of(loads.begin(), loads.end(), [](float v) { return v == 0; })) {
    log::info("eplb: no expert loads counted yet; nothing to rebalance");
    return;
  }
  const model::ModelConfig& c = model_->config();
  const int ranks = model_->ep_ranks();
  const int64_t slots = options_.eplb_slots > 0 ? options_.eplb_slots : c.n_routed_experts + ranks;
  const eplb::Placement p = eplb::rebalance_experts(loads, expert_loads_.layers(), expert_loads_.experts(), slots,
                                                    c.n_group, model_->ep_nodes(), ranks);
  const double before = eplb::balancedness(loads, model_->expert_placement(), ranks);
  model_->set_expert_placement(p);
  log::info("eplb: rebalancing {} MoE layers over {} ranks ({} slots): balancedness {:.3f} -> {:.3f} on the last {} steps",
            p.layers, ranks, slots, before, eplb::balancedness(loads, p, ranks), expert_loads_.steps());
  metrics_.update([](MetricsSnapshot& m) { ++m.eplb_rebalances; });
}

void Engine::publish_expert_loads() {
  const std::vector<float> loads = expert_loads_.totals();
  const bool ep = model_->ep_ranks() > 1;
  const double balance = ep && !loads.empty() ? eplb::balancedness(loads, model_->expert_placement(), model_->ep_ranks()) : 0;
  const int64_t version = model_->expert_placement_version(), layers = expert_loads_.layers();
  metrics_.update([&](MetricsSnapshot& m) {
    m.expert_loads = loads;
    m.expert_load_layers = layers;
    m.eplb_balancedness = balance;
    m.expert_placement_version = version;
  });
}

void Engine::step() {
  // EPLB on request or schedule (between steps: the forward below still uses the old placement
  // while the ranks prepare the new one).
  ++steps_;
  const bool scheduled = options_.eplb_interval_steps > 0 && steps_ % options_.eplb_interval_steps == 0;
  if ((rebalance_requested_.exchange(false) || scheduled) && model_->ep_ranks() > 1) {
    try {
      rebalance_experts();
    } catch (const Error& e) {
      log::warn("eplb: no rebalance: {}", e.what());
    }
  }
  take_incoming();
  drop_cancelled();
  admit();
  if (running_.empty()) {
    publish_metrics(0, 0);
    return;
  }

  // Plan: every decoding sequence feeds its one new token (oldest first; when blocks run out the
  // newest running sequence is preempted), then prompts take chunks of what budget is left.
  std::vector<int64_t> chunk(running_.size(), 0);
  int64_t budget = options_.max_batch_tokens;
  for (std::size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence& seq = *running_[i];
    if (static_cast<int64_t>(seq.tokens.size()) - seq.computed != 1) continue;
    while (!ensure_blocks(seq, seq.computed + 1)) {
      preempt_newest();
      if (i >= running_.size()) break;  // preempted itself
    }
    if (i >= running_.size()) break;
    chunk[i] = 1;
    --budget;
  }
  chunk.resize(running_.size());
  for (std::size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence& seq = *running_[i];
    const int64_t remaining = static_cast<int64_t>(seq.tokens.size()) - seq.computed;
    if (remaining <= 1) continue;
    int64_t n = std::min(remaining, budget);
    // Take what the free blocks cover; a prompt never preempts others for its chunk.
    while (n > 0 && !ensure_blocks(seq, seq.computed + n)) {
      const int64_t covered = static_cast<int64_t>(seq.blocks.size()) * BlockManager::kBlockTokens - seq.computed;
      n = std::min(n - 1, covered);
    }
    chunk[i] = std::max<int64_t>(n, 0);
    budget -= chunk[i];
  }
  std::vector<model::SequenceStep> steps;
  std::vector<Sequence*> stepped;
  int64_t batch_tokens = 0;
  for (std::size_t i = 0; i < running_.size(); ++i) {
    if (chunk[i] == 0) continue;
    Sequence& seq = *running_[i];
    steps.push_back({std::span<const int32_t>(seq.tokens).subspan(seq.computed, chunk[i]), seq.computed, seq.blocks});
    stepped.push_back(&seq);
    batch_tokens += chunk[i];
  }
  if (steps.empty()) {
    // Every running sequence is a prompt stuck without blocks: free the newest to unblock the rest.
    preempt_newest();
    return;
  }

  model::ForwardOutput out;
  {
    trace::Span span("engine step", "engine");
    out = model_->forward(steps, cache_);
  }
  expert_loads_.add(out.expert_tokens);
  publish_expert_loads();
  const int64_t vocab = model_->config().vocab_size;
  for (std::size_t s = 0; s < stepped.size(); ++s) {
    Sequence& seq = *stepped[s];
    seq.computed += static_cast<int64_t>(steps[s].tokens.size());
    if (options_.prefix_caching) {
      for (std::size_t b = seq.hashes.size(); b < static_cast<std::size_t>(seq.computed / BlockManager::kBlockTokens); ++b) {
        const uint64_t parent = b == 0 ? 0 : seq.hashes[b - 1];
        seq.hashes.push_back(blocks_.commit(
            seq.blocks[b], parent,
            std::span<const int32_t>(seq.tokens).subspan(b * BlockManager::kBlockTokens, BlockManager::kBlockTokens)));
      }
    }
    if (seq.computed == static_cast<int64_t>(seq.tokens.size())) emit_token(seq, out.logits.data<float>() + s * vocab);
  }
  std::erase_if(running_, [](const SequencePtr& s) { return s->finished; });
  publish_metrics(static_cast<int64_t>(steps.size()), batch_tokens);
}

void Engine::emit_token(Sequence& seq, const float* logits) {
  const model::ModelConfig& c = model_->config();
  const int64_t vocab = c.vocab_size;
  TokenEvent e;
  e.token = seq.sampler.sample(logits, vocab);
  if (seq.params.top_logprobs >= 0) {
    const float max = *std::max_element(logits, logits + vocab);
    double sum = 0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v] - max));
    const float log_z = max + static_cast<float>(std::log(sum));
    e.logprob = logits[e.token] - log_z;
    std::vector<int32_t> order(static_cast<std::size_t>(vocab));
    for (int32_t v = 0; v < vocab; ++v) order[v] = v;
    const auto k = static_cast<std::size_t>(seq.params.top_logprobs);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (std::size_t i = 0; i < k; ++i) e.top.push_back({order[i], logits[order[i]] - log_z});
  }
  seq.tokens.push_back(e.token);
  ++seq.generated;
  e.text = seq.text.push(e.token);

  const auto now = Clock::now();
  if (seq.generated == 1) metrics_.observe_ttft(std::chrono::duration<double>(now - seq.arrival).count());
  else metrics_.observe_inter_token(std::chrono::duration<double>(now - seq.last_token).count());
  seq.last_token = now;
  metrics_.update([](MetricsSnapshot& m) { ++m.generation_tokens; });

  const int32_t token = e.token;
  seq.stream->push_token(std::move(e));
  const bool eos = !seq.params.ignore_eos && c.eos_token_id && token == *c.eos_token_id;
  const bool stop_id = std::find(seq.params.stop_token_ids.begin(), seq.params.stop_token_ids.end(), token) !=
                       seq.params.stop_token_ids.end();
  if (eos || stop_id || seq.text.stopped()) {
    finish(seq, FinishReason::kStop);
  } else if (seq.generated >= seq.params.max_tokens ||
             static_cast<int64_t>(seq.tokens.size()) >= c.max_position_embeddings) {
    finish(seq, FinishReason::kLength);
  }
}

void Engine::publish_metrics(int64_t batch_sequences, int64_t batch_tokens) {
  const auto waiting = static_cast<int64_t>(waiting_.size()), running = static_cast<int64_t>(running_.size());
  const std::vector<int64_t> rank_running = running_per_partition();
  metrics_.update([&](MetricsSnapshot& m) {
    m.rank_running = rank_running;
    m.waiting = waiting;
    m.running = running;
    m.last_batch_sequences = batch_sequences;
    m.last_batch_tokens = batch_tokens;
    m.kv_blocks_total = blocks_.total();
    m.kv_blocks_used = blocks_.in_use();
    m.kv_blocks_cached = blocks_.cached();
  });
}

}  // namespace cachalot::engine
