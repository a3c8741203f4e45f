// The benchmarks behind `cachalot bench <what>`. Each measures cachalot and a peer in the same
// run (never a hard-coded figure) and reports both with their ratio.
#pragma once

#include <string>
#include <vector>

#include "bench/bench_report.h"

namespace cachalot::bench {

struct Options {
  bool quick = false;      // fewer repeats and sizes: a smoke run for demos and tests
  std::string model_dir;   // `bench model`: the checkpoint (default: a random one, written once)
  std::string url;         // `bench serve`: a running server to load instead of starting one
  bool mpi_peer = false;   // `bench ep` under mpirun: run only the MPI_Alltoallv peer (internal)
};

struct Bench {
  std::string name;
  std::string description;
  void (*run)(const Options&, Reporter&);
};

const std::vector<Bench>& all_benches();

void run_threadpool(const Options& options, Reporter& reporter);
void run_convert(const Options& options, Reporter& reporter);
void run_gemm(const Options& options, Reporter& reporter);
void run_mla(const Options& options, Reporter& reporter);
void run_model(const Options& options, Reporter& reporter);
void run_tokenizer(const Options& options, Reporter& reporter);
void run_serve(const Options& options, Reporter& reporter);
void run_ep(const Options& options, Reporter& reporter);
void run_eplb(const Options& options, Reporter& reporter);

}  // namespace cachalot::bench
