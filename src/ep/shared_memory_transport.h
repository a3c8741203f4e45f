// Transports over memory every rank can address: the receive areas and the flags that order the
// rounds live in one arena, and a sender copies its message straight into the receiver's area
// (one copy, as NVLink peers write into each other's buffers in DeepEP's intranode kernels).
//
// `local`: ranks are threads of one process sharing a heap arena (make_local_group).
// `shm`:   ranks are processes of one host sharing a POSIX shared-memory object
//          (open_shm_transport, collective: every rank calls it with the same name and sizes;
//          the name is unlinked once all have attached, so nothing outlives the processes).
//
// Waiting spins briefly, then yields and sleeps in short steps (more ranks than cores is the
// normal case on a CPU). While it waits a rank watches the group's failure record and, for
// `shm`, whether the peer it waits on still exists; either ends the wait with Error(kTimeout).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ep/transport.h"

namespace cachalot::ep {

inline constexpr int kMaxRanks = 64;

// `world` transports sharing one heap arena; hand transport r to the thread that is rank r.
std::vector<std::unique_ptr<Transport>> make_local_group(int world, const TransportOptions& options = {});

// Joins (rank 0: creates) the shared-memory group `name` (a POSIX shm name, "/..."). Returns
// when all `world` ranks have joined; Error(kTimeout) if they do not within options.timeout,
// Error(kResourceExhausted) if /dev/shm cannot hold the arena.
std::unique_ptr<Transport> open_shm_transport(const std::string& name, int rank, int world,
                                              const TransportOptions& options = {});

// Bytes of the arena a group of `world` ranks maps (what /dev/shm must hold for `shm`).
size_t shared_arena_bytes(int world, const TransportOptions& options);

}  // namespace cachalot::ep
