#include "engine/request.h"

namespace cachalot::engine {

std::string_view finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "?";
}

void RequestStream::push_token(TokenEvent e) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back({std::move(e), std::nullopt});
  }
  ready_.notify_one();
}

void RequestStream::push_finish(FinishEvent e) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back({std::nullopt, std::move(e)});
  }
  ready_.notify_one();
}

std::optional<RequestStream::Event> RequestStream::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!ready_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
  Event e = std::move(events_.front());
  events_.pop_front();
  return e;
}

}  // namespace cachalot::engine
