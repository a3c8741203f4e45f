#include "ep/launch.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <optional>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "core/trace.h"
#include "ep/shared_memory_transport.h"

namespace cachalot::ep {
namespace {

std::atomic<int> g_forward_signal{0};  // a signal run_shm_ranks's parent owes its ranks

}  // namespace

LocalRanks::LocalRanks(int world, const TransportOptions& options, std::string thread_name)
    : transports_(make_local_group(world, options)), errors_(static_cast<size_t>(world)) {
  for (int r = 0; r < world; ++r) threads_.emplace_back(&LocalRanks::thread_main, this, r, thread_name);
}

LocalRanks::~LocalRanks() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  start_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void LocalRanks::run(const std::function<void(Transport&)>& job) {
  std::unique_lock lock(mutex_);
  job_ = &job;
  running_ = world_size();
  first_failure_.store(-1);
  std::fill(errors_.begin(), errors_.end(), nullptr);
  ++generation_;
  start_.notify_all();
  done_.wait(lock, [&] { return running_ == 0; });
  job_ = nullptr;
  if (const int failed = first_failure_.load(); failed >= 0) std::rethrow_exception(errors_[failed]);
}

void LocalRanks::thread_main(int rank, std::string name) {
  trace::set_thread_name(fmt::format("{} {}", name, rank));
  // As many ranks as cores: each rank runs its kernels on its own thread (see InlineScope).
  std::optional<ThreadPool::InlineScope> inline_kernels;
  if (world_size() >= available_cpus()) inline_kernels.emplace();
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(Transport&)>* job = nullptr;
    {
      std::unique_lock lock(mutex_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    std::exception_ptr error;
    try {
      (*job)(*transports_[rank]);
    } catch (const std::exception& e) {
      error = std::current_exception();
      // Claimed before abort(): the peers fail only after it, so the root cause wins.
      int none = -1;
      first_failure_.compare_exchange_strong(none, rank);
      transports_[rank]->abort(e.what());
    }
    std::lock_guard lock(mutex_);
    if (error) errors_[rank] = error;
    if (--running_ == 0) done_.notify_all();
  }
}

void run_local_ranks(int world, const TransportOptions& options, const std::function<void(Transport&)>& body) {
  LocalRanks ranks(world, options);
  ranks.run(body);
}

std::vector<int> run_shm_ranks(int world, const TransportOptions& options, const std::function<void(Transport&)>& body) {
  const std::string name = unique_shm_name();
  std::fflush(nullptr);  // nothing buffered gets written twice
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    const pid_t pid = fork();
    if (pid < 0) {
      for (const pid_t p : pids) kill(p, SIGKILL);
      for (const pid_t p : pids) waitpid(p, nullptr, 0);
      raise_errno(errno, "ep: fork for an shm rank failed");
    }
    if (pid == 0) {
      int code = 0;
      try {
        // As for LocalRanks: ranks as many as the cores run their kernels on their own thread
        // (each process's pool would otherwise spin up a worker per core beside the others').
        std::optional<ThreadPool::InlineScope> inline_kernels;
        if (world >= available_cpus()) inline_kernels.emplace();
        std::unique_ptr<Transport> t = open_shm_transport(name, r, world, options);
        try {
          body(*t);
        } catch (const std::exception& e) {
          t->abort(e.what());
          throw;
        }
      } catch (const std::exception& e) {
        log::error("ep rank {}: {}", r, e.what());
        code = 1;
      }
      std::fflush(nullptr);
      _exit(code);  // no atexit handlers or static destructors of the parent's state
    }
    pids.push_back(pid);
  }
  // SIGTERM and SIGINT sent to this process go on to the ranks (a server's rank 0 drains on it).
  g_forward_signal = 0;
  struct sigaction forward {}, old_term {}, old_int {};
  forward.sa_handler = [](int sig) { g_forward_signal = sig; };
  sigemptyset(&forward.sa_mask);
  sigaction(SIGTERM, &forward, &old_term);
  sigaction(SIGINT, &forward, &old_int);
  std::vector<int> status(static_cast<size_t>(world), 0);
  for (int r = 0; r < world; ++r) {
    while (waitpid(pids[r], &status[r], 0) < 0) {
      if (errno != EINTR) break;
      if (const int sig = g_forward_signal.exchange(0); sig != 0)
        for (int other = r; other < world; ++other) kill(pids[other], sig);
    }
  }
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGINT, &old_int, nullptr);
  return status;
}

std::string describe_exit_status(int status) {
  if (WIFEXITED(status)) return "exited " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with status " + std::to_string(status);
}

std::string unique_shm_name() {
  static std::atomic<int> counter{0};
  return "/cachalot-ep-" + std::to_string(getpid()) + "-" + std::to_string(counter.fetch_add(1));
}

}  // namespace cachalot::ep
