// `cachalot serve --model DIR [--host H] [--port P] [--kv-cache-gb G] ...`: the OpenAI-compatible
// server in front of the continuous-batching engine. SIGTERM or SIGINT drains: new requests get
// 503, requests in flight finish (up to --shutdown-grace-s, then they are cancelled), then the
// server exits 0.
#include <fmt/format.h>
#include <signal.h>

#include <csignal>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "apps/cachalot/commands.h"
#include "apps/cachalot/model_flags.h"
#include "core/error.h"
#include "core/log.h"
#include "engine/engine.h"
#include "server/http_server.h"

namespace cachalot::cli {
namespace {

volatile std::sig_atomic_t g_shutdown_signal = 0;

struct Args {
  std::string model_dir, served_name;
  ModelFlags model;
  server::ServerOptions server;
  engine::EngineOptions engine;
  double kv_cache_gb = 2.0;
  bool no_prefix_caching = false;
  double shutdown_grace_s = 30;
};

std::string default_name(const std::string& dir) {
  std::filesystem::path p(dir);
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

void serve(Args& a, const model::ModelOptions& options);

void run(Args a) {
  // SIGTERM/SIGINT only note themselves (any thread may run the handler: libraries such as
  // OpenBLAS start threads before main, so masks cannot route signals to one thread); a thread
  // started once the server listens notices and drains. Installed first, so a signal during the
  // model load is not lost.
  g_shutdown_signal = 0;
  struct sigaction action {};
  action.sa_handler = [](int sig) { g_shutdown_signal = sig; };
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  CACHALOT_CHECK_ARG(a.kv_cache_gb > 0, "--kv-cache-gb must be positive, got {}", a.kv_cache_gb);
  // With --ep-transport shm|mpi this is rank 0 (the other ranks follow its forwards).
  run_as_ep_leader(a.model, a.model_dir, [&](const model::ModelOptions& options) { serve(a, options); });
}

void serve(Args& a, const model::ModelOptions& options) {
  std::shared_ptr<const model::Model> m = model::Model::load(a.model_dir, options);
  std::shared_ptr<const tokenizer::Tokenizer> tok;
  if (tokenizer::Tokenizer::present(a.model_dir)) {
    tok = std::make_shared<const tokenizer::Tokenizer>(tokenizer::Tokenizer::load(a.model_dir));
  } else {
    log::warn("{} has no tokenizer.json: prompts must be token ids and responses carry no text", a.model_dir);
  }
  // The budget is per process: with EP ranks as processes, each holds its own range of blocks.
  const int64_t blocks_per_rank = engine::blocks_for_budget(*m, a.kv_cache_gb);
  CACHALOT_CHECK_ARG(blocks_per_rank >= 1, "--kv-cache-gb {} holds no 64-token block of this model's cache",
                     a.kv_cache_gb);
  a.engine.kv_blocks = blocks_per_rank * m->attention_ranks();
  a.engine.prefix_caching = !a.no_prefix_caching;
  engine::Engine engine(m, tok, a.engine);
  a.server.model_name = a.served_name.empty() ? default_name(a.model_dir) : a.served_name;
  server::HttpServer http(engine, a.server);
  http.bind();
  // Announce the address once the accept loop runs (cpp-httplib listens with a backlog of 5,
  // so clients that arrive before the loop starts could be dropped).
  std::atomic<bool> served{false};
  std::thread announce([&] {
    while (!http.running()) {
      if (served) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    fmt::print("cachalot serve: {} on http://{}:{} ({} KV blocks of 64 tokens, {:.2f} GB{})\n", a.server.model_name,
               a.server.host, http.port(), a.engine.kv_blocks, a.kv_cache_gb,
               m->attention_ranks() > 1 ? fmt::format(" in each of {} attention ranks", m->attention_ranks()) : "");
    std::fflush(stdout);
  });
  std::thread signal_thread([&] {
    while (!served) {
      const int sig = g_shutdown_signal;
      if (sig == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      log::warn("cachalot serve: signal {}: draining (grace {} s)", sig, a.shutdown_grace_s);
      const auto grace = std::chrono::milliseconds(static_cast<int64_t>(a.shutdown_grace_s * 1000));
      engine.drain(grace);
      http.wait_responses(std::chrono::seconds(5));  // the last chunks and [DONE] go out
      // A signal that came while the server was still starting: stop() only ends a running
      // accept loop, so wait for it to run.
      while (!http.running() && !served) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      http.stop();
      return;
    }
  });
  try {
    http.run();
  } catch (...) {
    served = true;
    signal_thread.join();
    announce.join();
    throw;
  }
  served = true;
  signal_thread.join();
  announce.join();
  std::fprintf(stderr, "cachalot serve: stopped\n");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("serve", "serve the model over an OpenAI-compatible HTTP API");
  cmd->add_option("--model", args->model_dir, "model folder (config.json + safetensors [+ tokenizer.json])")->required();
  cmd->add_option("--host", args->server.host, "address to listen on (default 127.0.0.1)");
  cmd->add_option("--port", args->server.port, "port (default 8000; 0 picks a free one)");
  cmd->add_option("--served-model-name", args->served_name, "model id clients name (default: the folder's name)");
  cmd->add_option("--kv-cache-gb", args->kv_cache_gb, "memory for the paged KV cache in GB (default 2; per process with --ep-transport shm|mpi)");
  cmd->add_option("--max-batch-tokens", args->engine.max_batch_tokens,
                  "tokens per engine step: decode tokens + prefill chunks (default 512)");
  cmd->add_option("--max-running", args->engine.max_running, "sequences batched together (default 64)");
  cmd->add_option("--max-queue", args->engine.max_waiting, "queued requests before 429 (default 256)");
  cmd->add_option("--max-connections", args->server.max_connections, "concurrent HTTP connections (default 256)");
  cmd->add_flag("--no-prefix-caching", args->no_prefix_caching, "do not reuse KV blocks of repeated prompt prefixes");
  cmd->add_option("--eplb-interval-steps", args->engine.eplb_interval_steps,
                  "with --ep: rebalance the experts (EPLB) every N engine steps (default 0: only on POST /eplb/rebalance)");
  cmd->add_option("--eplb-window-steps", args->engine.eplb_window_steps,
                  "expert loads are counted over the last N steps (default 1000)");
  cmd->add_option("--eplb-slots", args->engine.eplb_slots,
                  "expert slots per MoE layer after a rebalance (default: routed experts + one redundant per EP rank)");
  add_model_flags(cmd, args->model);
  cmd->add_option("--shutdown-grace-s", args->shutdown_grace_s,
                  "on SIGTERM, seconds to let requests in flight finish before cancelling them (default 30)");
  cmd->callback([args] { run(*args); });
}

}  // namespace cachalot::cli
