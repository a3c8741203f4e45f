#include "apps/cachalot/model_flags.h"

#include "core/error.h"
#include "ep/launch.h"
#include "ep/mpi_transport.h"
#include "model/config.h"
#include "model/expert_parallel.h"

namespace cachalot::cli {

void run_as_ep_leader(const ModelFlags& flags, const std::string& model_dir,
                      const std::function<void(const model::ModelOptions&)>& leader) {
  if (flags.ep_transport == "local") return leader(flags.options());
  const model::ModelConfig config = model::load_config(model_dir);
  auto as_rank = [&](const std::shared_ptr<ep::Transport>& t) {
    model::ModelOptions o = flags.options();
    o.ep_transport = t;
    if (t->rank() == 0) return leader(o);
    model::Model::load(model_dir, o)->follow();
  };
  if (flags.ep_transport == "shm") {
    CACHALOT_CHECK_ARG(flags.ep >= 2, "--ep-transport shm needs --ep N with N >= 2 processes");
    model::check_expert_parallel(config, flags.ep);  // here, not in every forked rank
    const std::vector<int> status =
        ep::run_shm_ranks(flags.ep, model::expert_parallel_transport_options(config, flags.ep), [&](ep::Transport& t) {
          as_rank(std::shared_ptr<ep::Transport>(&t, [](ep::Transport*) {}));  // the launcher owns it
        });
    for (size_t r = 0; r < status.size(); ++r)
      if (ep::describe_exit_status(status[r]) != "exited 0")
        raise(ErrorKind::kInternal, "expert-parallel rank {} {} (its error is logged above)", r,
              ep::describe_exit_status(status[r]));
    return;
  }
  const int world = ep::mpirun_world_size();
  CACHALOT_CHECK_ARG(world >= 1, "--ep-transport mpi: start cachalot under mpirun -np N (N ranks)");
  // Checked before MPI starts: every process fails alike and none waits on one that left.
  model::check_expert_parallel(config, world);
  // Slots sized for the hosts mpirun spread the ranks over (internode dispatch forwards through
  // one rank per host and local index, which then passes on up to nodes x chunk rows).
  const int per_host = ep::mpi_ranks_per_host();
  ep::TransportOptions options = model::expert_parallel_transport_options(config, world, world / per_host);
  options.ranks_per_node = per_host;  // known now: the transport need not ask MPI again
  const std::shared_ptr<ep::Transport> t = ep::open_mpi_transport(options);
  CACHALOT_CHECK_ARG(flags.ep == 1 || flags.ep == t->world_size(), "--ep {} with mpirun -np {}: leave --ep out or make them equal",
                     flags.ep, t->world_size());
  as_rank(t);
}

}  // namespace cachalot::cli
