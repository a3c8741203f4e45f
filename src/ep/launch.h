// Starting a group of ranks in one call: threads over the `local` transport, or forked
// processes over `shm`. Tests, benchmarks and the engine's --ep mode use these; under mpirun
// each process opens the `mpi` transport itself.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ep/transport.h"

namespace cachalot::ep {

// A group of `world` ranks as persistent threads over one `local` transport group: run() hands
// every rank the same job and returns when all have finished. A rank that throws aborts the
// group (the others fail their next wait instead of hanging) and run() rethrows the first
// failing rank's exception; the group cannot run collectives after that.
class LocalRanks {
 public:
  LocalRanks(int world, const TransportOptions& options, std::string thread_name = "ep rank");
  ~LocalRanks();
  LocalRanks(const LocalRanks&) = delete;
  LocalRanks& operator=(const LocalRanks&) = delete;

  int world_size() const { return static_cast<int>(transports_.size()); }
  void run(const std::function<void(Transport&)>& job);

 private:
  void thread_main(int rank, std::string name);

  std::vector<std::unique_ptr<Transport>> transports_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable start_, done_;
  const std::function<void(Transport&)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int running_ = 0;
  bool stop_ = false;
  std::vector<std::exception_ptr> errors_;
  std::atomic<int> first_failure_{-1};
};

// Runs body(transport) on `world` threads, one per rank. A rank that throws aborts the group
// (the others fail their next wait instead of hanging); after every thread has ended, the first
// failing rank's exception is rethrown (an abort it caused elsewhere is not the root cause).
void run_local_ranks(int world, const TransportOptions& options, const std::function<void(Transport&)>& body);

// Forks `world` processes; each joins a fresh shm group and runs body(transport), exiting 0 on
// success, 1 if body threw (its message logged), or as the signal that killed it. The caller
// waits for all and gets their exit statuses (as from waitpid); SIGTERM or SIGINT it receives
// meanwhile is passed on to every rank. Fork from a process whose other threads hold no locks
// the child needs (the global ThreadPool is fork-safe).
std::vector<int> run_shm_ranks(int world, const TransportOptions& options, const std::function<void(Transport&)>& body);

// "exited 0", "exited 1", "killed by signal 9".
std::string describe_exit_status(int status);

// A shm name nobody else uses: "/cachalot-ep-<pid>-<n>".
std::string unique_shm_name();

}  // namespace cachalot::ep
