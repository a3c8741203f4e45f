// `cachalot dualpipe simulate`: the pipeline schedules side by side in the discrete-event
// simulator (makespan, bubble, activation peak, against the published formulas), with a Chrome
// trace per schedule. `cachalot dualpipe schedule`: each rank's steps with their send/recv
// peers. `cachalot dualpipe train`: a few SGD steps of a toy regression model run by
// the pipeline executor on threads (or processes under mpirun), loss printed per step;
// --check compares every step with a sequential run.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <nlohmann/json.hpp>

#include "apps/cachalot/commands.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/trace.h"
#include "dualpipe/executor.h"
#include "dualpipe/messages.h"
#include "dualpipe/simulator.h"
#include "dualpipe/validate.h"
#include "ep/mpi_transport.h"

namespace cachalot::cli {
namespace {

using namespace cachalot::dualpipe;

std::vector<ScheduleKind> chosen_schedules(const std::string& name) {
  if (name == "all") return {std::begin(kAllSchedules), std::end(kAllSchedules)};
  return {parse_schedule(name)};
}

struct SimulateArgs {
  int pp = 8, micro = 20;
  std::string schedule = "all";
  Costs costs;
  std::string trace_dir;
  bool json = false;
};

void simulate_command(const SimulateArgs& a) {
  check_costs(a.costs);
  const std::vector<ScheduleKind> kinds = chosen_schedules(a.schedule);
  if (!a.trace_dir.empty()) std::filesystem::create_directories(a.trace_dir);
  if (!a.json) {
    fmt::print("{} pipeline ranks, {} micro-batches; per chunk F {} B {} W {} F&B {} comm {}\n", a.pp, a.micro, a.costs.forward,
               a.costs.backward, a.costs.weight, a.costs.overlapped_or_default(), a.costs.comm);
    fmt::print("{:<10} {:>6} {:>6} {:>7} {:>9} {:>9} {:>9} {:>11} {:>8}\n", "schedule", "ranks", "stages", "params", "makespan",
               "bubble", "formula", "activations", "formula");
  }
  for (ScheduleKind kind : kinds) {
    Schedule s;
    try {
      s = make_schedule(kind, a.pp, a.micro);
    } catch (const Error& e) {
      if (kinds.size() == 1) throw;
      if (!a.json) fmt::print("{:<10} skipped: {}\n", schedule_name(kind), e.what());
      continue;
    }
    validate_schedule(s);
    const SimulationResult r = simulate(s, a.costs);
    std::string trace_file;
    if (!a.trace_dir.empty()) {
      trace_file = (std::filesystem::path(a.trace_dir) / (std::string(schedule_name(kind)) + ".json")).string();
      write_text_file(trace_file, simulation_trace_json(s, r));
    }
    if (a.json) {
      fmt::print("{}\n", nlohmann::json{{"schedule", schedule_name(kind)},
                                        {"ranks", s.layout.ranks},
                                        {"stages", s.layout.stages},
                                        {"micro_batches", a.micro},
                                        {"model_copies", s.layout.copies()},
                                        {"makespan", r.makespan},
                                        {"bubble_per_rank", r.bubble},
                                        {"bubble", r.max_bubble()},
                                        {"bubble_formula", bubble_formula(s.layout, a.costs)},
                                        {"peak_activations_per_rank", r.peak_activations},
                                        {"peak_activations", r.max_peak_activations()},
                                        {"activations_formula", activation_formula(s.layout)},
                                        {"trace", trace_file}}
                             .dump());
      continue;
    }
    fmt::print("{:<10} {:>6} {:>6} {:>6}x {:>9.2f} {:>9.2f} {:>9.2f} {:>11} {:>8}\n", schedule_name(kind), s.layout.ranks,
               s.layout.stages, s.layout.copies(), r.makespan, r.max_bubble(), bubble_formula(s.layout, a.costs),
               r.max_peak_activations(), activation_formula(s.layout));
  }
  if (!a.json) {
    fmt::print(
        "bubble: the largest per-rank idle time (makespan - busy); activations: most chunks held between their F and B on "
        "one rank.\nDualPipeV cuts the model in 2 x ranks stages, so its figures compare with DualPipe on twice the ranks.\n");
    if (!a.trace_dir.empty()) fmt::print("traces: {}/<schedule>.json (open in ui.perfetto.dev)\n", a.trace_dir);
  }
}

struct ScheduleArgs {
  int pp = 4, micro = 8;
  std::string schedule = "dualpipe";
  bool json = false;
};

// A message as the step list shows it: "act 3 <- r1" (received) or "grad 3 -> r0" (sent).
std::string message_text(const Message& m, bool received) {
  return fmt::format("{} {} {} r{}", m.gradient ? "grad" : "act", m.micro_batch, received ? "<-" : "->", received ? m.src : m.dst);
}

void schedule_command(const ScheduleArgs& a) {
  const Schedule s = make_schedule(parse_schedule(a.schedule), a.pp, a.micro);
  validate_schedule(s);
  const Layout& l = s.layout;
  std::vector<Message> receives, sends;
  for (int r = 0; r < l.ranks; ++r) {
    if (!a.json) fmt::print("rank {} (stages {}):\n", r, l.chunks_per_rank == 1 ? fmt::format("{}", l.stage_at(r, 0))
                                                                                   : fmt::format("{}, {}", l.stage_at(r, 0), l.stage_at(r, 1)));
    nlohmann::json steps = nlohmann::json::array();
    for (const Step& step : s.steps[r]) {
      receives.clear();
      sends.clear();
      step_messages(l, r, step, &receives, &sends);
      std::vector<std::string> comm;
      nlohmann::json recv_json = nlohmann::json::array(), send_json = nlohmann::json::array();
      for (const Message& m : receives) {
        if (m.src == m.dst) continue;  // a hand-off inside the rank
        comm.push_back(message_text(m, true));
        recv_json.push_back({{"peer", m.src}, {"gradient", m.gradient}, {"micro_batch", m.micro_batch}});
      }
      for (const Message& m : sends) {
        if (m.src == m.dst) continue;
        comm.push_back(message_text(m, false));
        send_json.push_back({{"peer", m.dst}, {"gradient", m.gradient}, {"micro_batch", m.micro_batch}});
      }
      const std::string label = step_label(step, l.chunks_per_rank);
      steps.push_back({{"step", label}, {"recv", recv_json}, {"send", send_json}});
      if (!a.json) fmt::print("  {:<14} {}\n", label, fmt::join(comm, ", "));
    }
    if (a.json) fmt::print("{}\n", nlohmann::json{{"rank", r}, {"steps", steps}}.dump());
  }
}

struct TrainArgs {
  int pp = 4, micro = 0, steps = 5;
  std::string schedule = "dualpipev";
  std::string transport = "auto";
  ToyModelConfig model{64, 128, 2, 16, 1};
  float lr = 0.2f;
  int timeout_s = 120;
  bool check = false, json = false;
};

// Largest relative gradient difference of this rank's chunks against the sequential model.
double gradient_difference(const PipelineExecutor& ex, const SequentialModel& reference) {
  double worst = 0;
  for (int c = 0; c < ex.chunks(); ++c)
    worst = std::max(worst, relative_difference(ex.chunk(c).grads(), reference.stage(ex.stage_of_chunk(c)).grads()));
  return worst;
}

void train_rank(const TrainArgs& a, const Schedule& schedule, const ToyBatch& batch, PeerComm& comm) {
  PipelineExecutor ex(schedule, a.model, comm);
  std::optional<SequentialModel> reference;
  if (a.check) reference.emplace(a.model, schedule.layout.stages);
  const bool printer = comm.rank() == 0;
  for (int step = 0; step < a.steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    const double loss = ex.step(batch);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    nlohmann::json line{{"step", step}, {"loss", loss}, {"ms", ms}};
    std::string check_text;
    if (reference) {
      const double expected = reference->step(batch);
      double worst = 0;
      for (double d : all_gather(comm, gradient_difference(ex, *reference), ex.free_tag(0))) worst = std::max(worst, d);
      const double loss_difference = std::abs(loss - expected) / std::max(std::abs(expected), 1e-30);
      line["sequential_loss"] = expected;
      line["gradient_difference"] = worst;
      check_text = fmt::format("  sequential {:.6f}, gradients within {:.1e}", expected, worst);
      if (worst > 1e-5 || loss_difference > 1e-5)
        raise(ErrorKind::kInternal, "dualpipe: step {} differs from the sequential step: loss {} vs {}, gradients {:.3e} apart", step,
              loss, expected, worst);
      reference->sgd(a.lr);
    }
    ex.sgd(a.lr);
    if (!printer) continue;
    if (a.json)
      fmt::print("{}\n", line.dump());
    else
      fmt::print("step {:>3}  loss {:.6f}  {:8.2f} ms{}\n", step, loss, ms, check_text);
    std::fflush(stdout);
  }
}

void train_command(TrainArgs a) {
  const ScheduleKind kind = parse_schedule(a.schedule);
  if (a.micro == 0) a.micro = 4 * a.pp;  // enough for every family's minimum (2 x PP)
  CACHALOT_CHECK_ARG(a.transport == "auto" || a.transport == "mpi" || a.transport == "local",
                     "dualpipe: --transport is local, mpi or auto, got '{}'", a.transport);
  const Schedule schedule = make_schedule(kind, a.pp, a.micro);  // each rank's executor validates it
  const ToyBatch batch = make_toy_batch(a.model, a.micro);
  const auto timeout = std::chrono::milliseconds(int64_t{a.timeout_s} * 1000);
  const bool mpi = a.transport == "mpi" || (a.transport == "auto" && ep::mpirun_world_size() > 1);
  const auto header = [&] {
    if (a.json) return;
    fmt::print("{} on {} {} ranks: {} stages of {} residual MLP blocks (hidden {}, ffn {}), {} micro-batches of {} tokens\n",
               schedule_name(kind), a.pp, mpi ? "mpi" : "thread", schedule.layout.stages, a.model.blocks_per_stage, a.model.hidden,
               a.model.ffn, a.micro, a.model.tokens);
  };
  if (!mpi) {
    header();
    run_local_peers(a.pp, timeout, [&](PeerComm& comm) { train_rank(a, schedule, batch, comm); });
    return;
  }
  std::unique_ptr<PeerComm> comm = open_mpi_peers(timeout);
  CACHALOT_CHECK_ARG(comm->size() == a.pp, "dualpipe: mpirun started {} processes for --pp {}", comm->size(), a.pp);
  trace::set_process(comm->rank(), "pipeline rank " + std::to_string(comm->rank()));
  trace::set_thread_name("pipeline rank " + std::to_string(comm->rank()), comm->rank());
  if (comm->rank() > 0) set_trace_path_suffix(".rank" + std::to_string(comm->rank()));
  if (comm->rank() == 0) header();
  try {
    train_rank(a, schedule, batch, *comm);
  } catch (const std::exception& e) {
    comm->abort(e.what());
    throw;
  }
}

}  // namespace

void add_dualpipe_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("dualpipe", "pipeline-parallel schedules (1F1B, ZB1P, DualPipe, DualPipeV): simulate or train");
  cmd->require_subcommand(1);

  auto* sim = cmd->add_subcommand("simulate", "compare schedules in a discrete-event simulation, with a trace per schedule");
  auto s = std::make_shared<SimulateArgs>();
  sim->add_option("--pp", s->pp, "pipeline ranks (default 8)");
  sim->add_option("--micro", s->micro, "micro-batches per step (default 20)");
  sim->add_option("--schedule", s->schedule, "1f1b, zb1p, dualpipe, dualpipev or all (default)");
  sim->add_option("--forward", s->costs.forward, "time of a chunk's forward F (default 1)");
  sim->add_option("--backward", s->costs.backward, "time of a chunk's full backward B, input and weight halves (default 2)");
  sim->add_option("--weight", s->costs.weight, "time of the weight half W (default 1)");
  sim->add_option("--overlapped", s->costs.overlapped, "time of an overlapped F&B (default F + B)");
  sim->add_option("--comm", s->costs.comm, "time of one hop between ranks, beside compute (default 0)");
  sim->add_option("--trace-dir", s->trace_dir, "write DIR/<schedule>.json Chrome/Perfetto traces");
  sim->add_flag("--json", s->json, "one JSON object per schedule");
  sim->callback([s] { simulate_command(*s); });

  auto* list = cmd->add_subcommand("schedule", "print each rank's steps with the messages they receive and send");
  auto l = std::make_shared<ScheduleArgs>();
  list->add_option("--pp", l->pp, "pipeline ranks (default 4)");
  list->add_option("--micro", l->micro, "micro-batches (default 8)");
  list->add_option("--schedule", l->schedule, "1f1b, zb1p, dualpipe (default) or dualpipev");
  list->add_flag("--json", l->json, "one JSON object per rank");
  list->callback([l] { schedule_command(*l); });

  auto* train = cmd->add_subcommand("train", "train a toy model with a pipeline schedule on threads or under mpirun");
  auto t = std::make_shared<TrainArgs>();
  train->add_option("--pp", t->pp, "pipeline ranks (default 4; under mpirun, the process count)");
  train->add_option("--schedule", t->schedule, "1f1b, zb1p, dualpipe or dualpipev (default)");
  train->add_option("--micro", t->micro, "micro-batches per step (default 4 x pp)");
  train->add_option("--steps", t->steps, "SGD steps (default 5)");
  train->add_option("--hidden", t->model.hidden, "model width (default 64)");
  train->add_option("--ffn", t->model.ffn, "MLP inner width (default 128)");
  train->add_option("--blocks", t->model.blocks_per_stage, "residual MLP blocks per stage (default 2)");
  train->add_option("--tokens", t->model.tokens, "rows per micro-batch (default 16)");
  train->add_option("--lr", t->lr, "SGD learning rate (default 0.2)");
  train->add_option("--seed", t->model.seed, "seed of the weights and data (default 1)");
  train->add_option("--transport", t->transport, "local (threads), mpi (under mpirun) or auto (default)");
  train->add_option("--timeout", t->timeout_s, "seconds a rank waits for a peer's message (default 120)");
  train->add_flag("--check", t->check, "compare every step with a sequential run (fails beyond 1e-5 relative)");
  train->add_flag("--json", t->json, "one JSON object per step");
  train->callback([t] { train_command(*t); });
}

}  // namespace cachalot::cli
