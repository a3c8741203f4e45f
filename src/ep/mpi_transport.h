// The `mpi` transport: ranks are MPI processes (launched with mpirun, possibly across hosts),
// our analogue of DeepEP's RDMA path. A round posts one nonblocking receive per source straight
// into the receive area and one send per destination from a staging buffer, and waits on them
// with the transport's deadline. Nodes are the hosts MPI reports (MPI_COMM_TYPE_SHARED), unless
// options.ranks_per_node says otherwise; ranks of one node must be consecutive.
//
// A rank whose process dies ends the job through mpirun (OpenMPI's default error handling);
// abort() calls MPI_Abort, since MPI has no way to tell peers one rank gave up on a round.
#pragma once

#include <memory>

#include "ep/transport.h"

namespace cachalot::ep {

// Initialises MPI (thread level: serialized) on first use; finalised at exit.
std::unique_ptr<Transport> open_mpi_transport(const TransportOptions& options = {});

// Ranks on this host (the same on every host; collective over MPI_COMM_WORLD, initialises MPI):
// what the transport takes as ranks per node unless told otherwise, known before it is opened
// so that slots can be sized for the node count.
int mpi_ranks_per_host();

// The number of processes mpirun started, from its environment (OMPI_COMM_WORLD_SIZE,
// PMI_SIZE) before MPI is initialised; 0 when this process was not started by mpirun.
int mpirun_world_size();

}  // namespace cachalot::ep
