// The flags every command that runs the model takes (--precision, --kv-cache, --ep,
// --ep-overlap), and the ModelOptions they stand for.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

#include "ep/shared_memory_transport.h"
#include "model/model.h"

namespace cachalot::cli {

struct ModelFlags {
  std::string precision = "fast";
  std::string kv_cache = "bf16";
  int ep = 1;
  std::string ep_overlap = "off";
  std::string ep_transport = "local";

  model::ModelOptions options() const {
    model::ModelOptions o;
    o.precision = precision == "exact" ? model::Precision::kExact : model::Precision::kFast;
    o.kv_format = kv_cache == "fp8" ? mla::KvFormat::kFp8 : mla::KvFormat::kBf16;
    o.ep_ranks = ep;
    o.ep_overlap = ep_overlap == "on";
    return o;
  }
};

inline void add_model_flags(CLI::App* cmd, ModelFlags& flags) {
  cmd->add_option("--precision", flags.precision, "fast (default: FP8 GEMMs, BF16 activations) or exact (FP32)")
      ->check(CLI::IsMember({"fast", "exact"}));
  cmd->add_option("--kv-cache", flags.kv_cache, "KV cache format in fast mode: bf16 (default) or fp8")
      ->check(CLI::IsMember({"bf16", "fp8"}));
  cmd->add_option("--ep", flags.ep,
                  "expert parallelism over N ranks (threads of this process): data-parallel attention, routed experts "
                  "split over the ranks, dispatch/combine between them (default 1: off)")
      ->check(CLI::Range(1, ep::kMaxRanks));
  cmd->add_option("--ep-overlap", flags.ep_overlap,
                  "with --ep: two micro-batches per rank so one's dispatch/combine overlaps the other's compute (on, off: the default, as it measured slower on few cores)")
      ->check(CLI::IsMember({"on", "off"}));
  cmd->add_option("--ep-transport", flags.ep_transport,
                  "with --ep: ranks as threads (local, default), as processes of this host over shared memory (shm), "
                  "or as the processes of `mpirun -np N cachalot ...` (mpi)")
      ->check(CLI::IsMember({"local", "shm", "mpi"}));
}

// Runs `leader(options)`: in this process, or, with --ep-transport shm|mpi, as rank 0 of a group
// of processes whose other ranks load the model and follow rank 0's forwards. Only rank 0
// prints. Error if a rank fails.
void run_as_ep_leader(const ModelFlags& flags, const std::string& model_dir,
                      const std::function<void(const model::ModelOptions&)>& leader);

}  // namespace cachalot::cli
