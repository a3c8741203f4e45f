// Runs the dispatch/combine checks on the `mpi` transport; started by ep_mpi_test under
// `mpirun -np N`. Exits 0 when every check passed on this rank; prints the failure otherwise.
#include <cstdio>
#include <exception>

#include "ep/mpi_transport.h"
#include "tests/ep/ep_checks.h"

int main() {
  using namespace cachalot::ep;
  try {
    TransportOptions options;
    options.slot_bytes = size_t{4} << 20;
    options.timeout = std::chrono::seconds(60);
    std::unique_ptr<Transport> t = open_mpi_transport(options);
    checks::all_cases(*t);
    // Nodes of one rank each: what the per-node counts see across hosts.
    TransportOptions per_rank_nodes = options;
    per_rank_nodes.ranks_per_node = 1;
    std::unique_ptr<Transport> nodes = open_mpi_transport(per_rank_nodes);
    checks::all_cases(*nodes);
    // Nodes of two ranks each: the internode path (a forwarder per node and local index).
    if (t->world_size() >= 4 && t->world_size() % 2 == 0) {
      TransportOptions pairs = options;
      pairs.ranks_per_node = 2;
      std::unique_ptr<Transport> paired = open_mpi_transport(pairs);
      checks::all_cases(*paired);
    }
    TransportOptions small = options;
    small.slot_bytes = 256 << 10;
    std::unique_ptr<Transport> s = open_mpi_transport(small);
    checks::overflow_then_recover(*s);
    std::printf("rank %d of %d (%d per node): ok\n", t->rank(), t->world_size(), t->ranks_per_node());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ep_mpi_check: %s\n", e.what());
    return 1;
  }
}
