#include "ep/launch.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "ep/shared_memory_transport.h"

namespace cachalot::ep {

void run_local_ranks(int world, const TransportOptions& options, const std::function<void(Transport&)>& body) {
  std::vector<std::unique_ptr<Transport>> group = make_local_group(world, options);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::atomic<int> first_failure{-1};
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        body(*group[r]);
      } catch (const std::exception& e) {
        errors[r] = std::current_exception();
        int none = -1;
        first_failure.compare_exchange_strong(none, r);
        group[r]->abort(e.what());
      }
    });
  for (std::thread& t : threads) t.join();
  if (first_failure.load() >= 0) std::rethrow_exception(errors[first_failure.load()]);
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
  std::vector<int> status(static_cast<size_t>(world), 0);
  for (int r = 0; r < world; ++r) waitpid(pids[r], &status[r], 0);
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
