// What a client asks of the engine and what comes back: a request (prompt ids, sampling, stop
// conditions) and the stream of events the engine pushes for it (tokens with their text, then
// one finish), read by the front end's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "model/sampler.h"

namespace cachalot::engine {

struct RequestParams {
  std::vector<int32_t> prompt;
  int64_t max_tokens = 16;
  model::SamplingParams sampling;
  std::vector<std::string> stop;        // stop strings (need a tokenizer); not part of the output
  std::vector<int32_t> stop_token_ids;  // besides EOS
  bool ignore_eos = false;
  int top_logprobs = -1;                // -1: no logprobs; 0..5: the chosen token's and this many alternatives
};

struct TokenLogprob {
  int32_t token;
  float logprob;
};

struct TokenEvent {
  int32_t token;
  std::string text;                  // text that became final with this token (may be empty)
  std::optional<float> logprob;      // of the chosen token under the model (log-softmax of logits)
  std::vector<TokenLogprob> top;     // the most likely alternatives, best first
};

enum class FinishReason { kStop, kLength, kCancelled, kError };
std::string_view finish_reason_name(FinishReason reason);

struct FinishEvent {
  FinishReason reason;
  std::string text;          // final text not yet sent (held back for stop strings / UTF-8)
  std::string error;         // for kError
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_prompt_tokens = 0;
};

// The channel between the engine (producer) and one client (consumer).
class RequestStream {
 public:
  struct Event {
    std::optional<TokenEvent> token;
    std::optional<FinishEvent> finish;
  };

  void push_token(TokenEvent e);
  void push_finish(FinishEvent e);
  // Waits up to `timeout` for the next event; nullopt on timeout.
  std::optional<Event> next(std::chrono::milliseconds timeout);

  // The client went away or gave up: the engine frees the request's blocks at its next step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Event> events_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace cachalot::engine
