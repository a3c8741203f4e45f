// run_local_peers: ranks as threads exchanging messages through one mailbox hub.
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/trace.h"
#include "dualpipe/peer_comm.h"

namespace cachalot::dualpipe {
namespace {

class Hub {
 public:
  explicit Hub(std::chrono::milliseconds timeout) : timeout_(timeout) {}

  void put(int src, int dst, int tag, std::span<const std::byte> data) {
    {
      std::lock_guard lock(mutex_);
      boxes_[{src, dst, tag}].emplace_back(data.begin(), data.end());
    }
    arrived_.notify_all();
  }

  void take(int src, int dst, int tag, std::span<std::byte> data) {
    std::unique_lock lock(mutex_);
    const auto key = std::make_tuple(src, dst, tag);
    const bool ready = arrived_.wait_for(lock, timeout_, [&] {
      auto it = boxes_.find(key);
      return !failure_.empty() || (it != boxes_.end() && !it->second.empty());
    });
    auto it = boxes_.find(key);
    const bool have = it != boxes_.end() && !it->second.empty();
    if (!have) {
      if (!failure_.empty())
        raise(ErrorKind::kTimeout, "dualpipe: rank {} stopped waiting for tag {} from rank {}: {}", dst, tag, src, failure_);
      CACHALOT_ASSERT(!ready);
      raise(ErrorKind::kTimeout, "dualpipe: rank {} waited {} ms for tag {} from rank {}", dst, timeout_.count(), tag, src);
    }
    std::vector<std::byte> message = std::move(it->second.front());
    it->second.pop_front();
    if (message.size() != data.size())
      raise(ErrorKind::kCorruptData, "dualpipe: rank {} got {} bytes with tag {} from rank {}, expected {}", dst, message.size(), tag,
            src, data.size());
    std::copy(message.begin(), message.end(), data.begin());
  }

  void fail(std::string reason) {
    {
      std::lock_guard lock(mutex_);
      if (failure_.empty()) failure_ = std::move(reason);
    }
    arrived_.notify_all();
  }

 private:
  std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::map<std::tuple<int, int, int>, std::deque<std::vector<std::byte>>> boxes_;
  std::string failure_;
};

class LocalPeer final : public PeerComm {
 public:
  LocalPeer(Hub& hub, int rank, int size) : hub_(hub), rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void send(int dst, int tag, std::span<const std::byte> data) override {
    CACHALOT_CHECK_ARG(dst >= 0 && dst < size_, "dualpipe: no rank {} among {}", dst, size_);
    hub_.put(rank_, dst, tag, data);
  }
  void recv(int src, int tag, std::span<std::byte> data) override {
    CACHALOT_CHECK_ARG(src >= 0 && src < size_, "dualpipe: no rank {} among {}", src, size_);
    hub_.take(src, rank_, tag, data);
  }
  void abort(std::string_view reason) override { hub_.fail("rank " + std::to_string(rank_) + " failed: " + std::string(reason)); }

 private:
  Hub& hub_;
  int rank_, size_;
};

}  // namespace

void run_local_peers(int ranks, std::chrono::milliseconds timeout, const std::function<void(PeerComm&)>& body) {
  CACHALOT_CHECK_ARG(ranks >= 1, "dualpipe: need at least one rank, got {}", ranks);
  Hub hub(timeout);
  std::vector<std::exception_ptr> errors(ranks);
  std::mutex first_mutex;
  int first_failure = -1;
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      trace::set_thread_name("pipeline rank " + std::to_string(r), r);
      LocalPeer peer(hub, r, ranks);
      try {
        body(peer);
      } catch (const std::exception& e) {
        errors[r] = std::current_exception();
        {
          std::lock_guard lock(first_mutex);
          if (first_failure < 0) first_failure = r;
        }
        peer.abort(e.what());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  if (first_failure >= 0) std::rethrow_exception(errors[first_failure]);
}

}  // namespace cachalot::dualpipe
