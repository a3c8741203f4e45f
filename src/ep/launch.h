// Starting a group of ranks in one call: threads over the `local` transport, or forked
// processes over `shm`. Tests, benchmarks and the engine's --ep mode use these; under mpirun
// each process opens the `mpi` transport itself.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ep/transport.h"

namespace cachalot::ep {

// Runs body(transport) on `world` threads, one per rank. A rank that throws aborts the group
// (the others fail their next wait instead of hanging); after every thread has ended, the first
// failing rank's exception is rethrown (an abort it caused elsewhere is not the root cause).
void run_local_ranks(int world, const TransportOptions& options, const std::function<void(Transport&)>& body);

// Forks `world` processes; each joins a fresh shm group and runs body(transport), exiting 0 on
// success, 1 if body threw (its message logged), or as the signal that killed it. The caller
// waits for all and gets their exit statuses (as from waitpid). Fork from a process whose other
// threads hold no locks the child needs (the global ThreadPool is fork-safe).
std::vector<int> run_shm_ranks(int world, const TransportOptions& options, const std::function<void(Transport&)>& body);

// "exited 0", "exited 1", "killed by signal 9".
std::string describe_exit_status(int status);

// A shm name nobody else uses: "/cachalot-ep-<pid>-<n>".
std::string unique_shm_name();

}  // namespace cachalot::ep
