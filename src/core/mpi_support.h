// MPI start-up shared by the modules that run ranks under mpirun (ep's `mpi` transport,
// dualpipe's `mpi` peers): one initialisation per process, finalised at exit, and MPI error
// codes turned into cachalot errors. A separate library (cachalot::core_mpi), so core itself
// does not link MPI.
#pragma once

#include <string_view>

namespace cachalot::mpi {

// Throws Error(kIo) "<who>: <what> failed: <MPI's message>" unless rc is MPI_SUCCESS.
void check(int rc, std::string_view who, std::string_view what);

// Initialises MPI once per process (asking for MPI_THREAD_SERIALIZED: one thread at a time may
// call it) unless it is already up, and finalises it at exit. Throws Error(kUnsupported) when
// this MPI offers less than `needed_thread_level` (an MPI_THREAD_* constant).
void start(int needed_thread_level, std::string_view who);

}  // namespace cachalot::mpi
