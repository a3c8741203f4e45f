// `cachalot bench serve`: an open-loop load generator against the OpenAI-compatible server over
// HTTP. By default the server runs in this process on a random mini checkpoint
// (bench-models/mini, or --model DIR), on loopback; --url targets a running server instead. Requests arrive as a Poisson process at each rate (and all
// at once for the saturation case), with prompt and output lengths uniform in [0.5, 1.5] x their
// means and half of each prompt a prefix shared by all requests (a system prompt). Reported per
// rate: input and output tokens/s, TTFT and TPOT p50/p90/p99, the prefix-cache hit rate; the
// peers are the offered load, the model's raw prefill and decode measured in the same run, and
// the hit rate an ideal prefix cache would reach.
#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <regex>
#include <thread>

#include "bench/bench_models.h"
#include "bench/benches.h"
#include "core/error.h"
#include "core/log.h"
#include "engine/engine.h"
#include "server/http_server.h"

namespace cachalot::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct LoadSpec {
  double rate;  // requests per second; <= 0: all at once (saturation)
  int requests;
  int prompt_mean, output_mean;
  double shared_prefix;  // fraction of each prompt that is the common prefix
};

struct Record {
  bool ok = false;
  double sent = 0, first = 0, last = 0;  // seconds since the run started
  int64_t prompt = 0, completion = 0, cached = 0, ideal_cached = 0;
  std::vector<double> token_times;
};

// One streamed request; fills the record from its chunks and final usage.
struct Target {
  std::string host;
  int port;
};

// "http://HOST:PORT" (a trailing slash allowed).
Target parse_url(const std::string& url) {
  static const std::regex pattern(R"(^http://([^:/]+):([0-9]{1,5})/?$)");
  std::smatch m;
  if (!std::regex_match(url, m, pattern)) {
    raise(ErrorKind::kInvalidArgument, "--url must look like http://HOST:PORT, got '{}'", url);
  }
  return {m[1].str(), std::stoi(m[2].str())};
}

void send_one(const Target& target, const nlohmann::json& body, Clock::time_point t0, Record& r) {
  httplib::Client client(target.host, target.port);
  client.set_read_timeout(600, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  std::string buffer;
  auto now = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  r.sent = now();
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buffer.append(data, n);
    for (std::size_t end; (end = buffer.find("\n\n")) != std::string::npos; buffer.erase(0, end + 2)) {
      const std::string event = buffer.substr(0, end);
      if (event.rfind("data: {", 0) != 0) continue;
      const auto chunk = nlohmann::json::parse(event.substr(6));
      if (chunk.contains("usage")) {
        r.prompt = chunk["usage"]["prompt_tokens"];
        r.completion = chunk["usage"]["completion_tokens"];
        r.cached = chunk["usage"]["prompt_cache_hit_tokens"];
      }
      for (const auto& choice : chunk.value("choices", nlohmann::json::array())) {
        if (choice.value("token_ids", nlohmann::json::array()).empty()) continue;
        r.token_times.push_back(now());
        if (r.token_times.size() == 1) r.first = r.token_times.back();
        r.last = r.token_times.back();
      }
    }
    return true;
  };
  const auto res = client.send(req);
  r.ok = res && res->status == 200 && r.completion > 0;
}

std::vector<Record> run_load(const Target& target, const LoadSpec& spec, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> shared(static_cast<std::size_t>(spec.prompt_mean * 2));
  for (auto& t : shared) t = static_cast<int32_t>(rng() % vocab);
  std::exponential_distribution<double> gap(spec.rate > 0 ? spec.rate : 1.0);
  std::uniform_real_distribution<double> spread(0.5, 1.5);
  std::vector<Record> records(static_cast<std::size_t>(spec.requests));
  std::vector<nlohmann::json> bodies;
  std::vector<double> arrivals;
  double at = 0;
  for (int i = 0; i < spec.requests; ++i) {
    const int len = std::max(2, static_cast<int>(spec.prompt_mean * spread(rng)));
    const int prefix = static_cast<int>(spec.shared_prefix * len);
    std::vector<int32_t> prompt(shared.begin(), shared.begin() + prefix);
    while (static_cast<int>(prompt.size()) < len) prompt.push_back(static_cast<int32_t>(rng() % vocab));
    const int output = std::max(1, static_cast<int>(spec.output_mean * spread(rng)));
    // What a perfect prefix cache could serve: the shared prefix's full blocks (not the first
    // request's, which fills the cache), never the prompt's last token.
    records[i].ideal_cached = i == 0 ? 0 : std::min(prefix, len - 1) / 64 * 64;
    bodies.push_back({{"prompt", prompt}, {"max_tokens", output}, {"temperature", 0}, {"ignore_eos", true},
                      {"stream", true}, {"stream_options", {{"include_usage", true}}}});
    arrivals.push_back(at);
    if (spec.rate > 0) at += gap(rng);
  }
  const auto t0 = Clock::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < spec.requests; ++i) {
    clients.emplace_back([&, i] {
      std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(arrivals[i])));
      send_one(target, bodies[i], t0, records[i]);
    });
  }
  for (auto& t : clients) t.join();
  return records;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = p * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// Seconds to prefill `batch` prompts of `len` random tokens in one forward (median of 3).
double prefill_seconds(const model::Model& m, int64_t batch, int64_t len) {
  PromptBatch prompts = make_prompt_batch(m, batch, len, 3);
  return median_ns([&] { m.forward(prompts.steps, prompts.cache); }, 3, 1) * 1e-9;
}

}  // namespace

void run_serve(const Options& options, Reporter& reporter) {
  const bool quick = options.quick;
  // The raw-model peers need the checkpoint the server runs: ours by default, or --model's with
  // --url (measured here, so the server should run on this machine).
  if (!options.url.empty() && options.model_dir.empty()) {
    raise(ErrorKind::kInvalidArgument,
          "bench serve --url needs --model DIR: the checkpoint that server runs, for the raw-model peers");
  }
  const std::string dir = options.model_dir.empty() ? ensure_preset_checkpoint("mini") : options.model_dir;
  std::shared_ptr<const model::Model> m = model::Model::load(dir);
  engine::EngineOptions engine_options;
  engine_options.kv_blocks = engine::blocks_for_budget(*m, 2.0);
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<server::HttpServer> http;
  std::thread serving;
  Target target;
  if (options.url.empty()) {
    engine = std::make_unique<engine::Engine>(m, nullptr, engine_options);
    server::ServerOptions server_options;
    server_options.port = 0;
    server_options.model_name = std::filesystem::path(dir).filename().string();
    http = std::make_unique<server::HttpServer>(*engine, server_options);
    http->bind();
    serving = std::thread([&] { http->run(); });
    while (!http->running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    target = {"127.0.0.1", http->port()};
  } else {
    target = parse_url(options.url);
  }

  const int requests = quick ? 16 : 64;
  const int prompt_mean = quick ? 128 : 256, output_mean = quick ? 32 : 64;
  const std::vector<double> rates = quick ? std::vector<double>{1, 4, 0} : std::vector<double>{2, 8, 0};
  const int64_t saturated_batch = std::min<int64_t>(requests, engine_options.max_running);
  const int64_t vocab = m->config().vocab_size;

  // The model alone, measured in the same run: one prompt's prefill (the TTFT floor), decode at
  // batch 1 (issue 05's single-sequence ceiling) and at the batch the saturated server runs.
  const double prefill_one_s = prefill_seconds(*m, 1, prompt_mean);
  const double prefill_batch_s = prefill_seconds(*m, 8, prompt_mean);
  const int64_t mid_context = prompt_mean + output_mean / 2;
  const double decode_1_s = decode_step_seconds(*m, 1, mid_context, quick ? 1.0 : 3.0, 15);
  const double decode_b_s = decode_step_seconds(*m, saturated_batch, mid_context, quick ? 1.0 : 3.0, 15);
  const std::string model_name = std::filesystem::path(dir).filename().string();

  for (std::size_t k = 0; k < rates.size(); ++k) {
    const LoadSpec spec{rates[k], requests, prompt_mean, output_mean, 0.5};
    const auto records = run_load(target, spec, vocab, 1000 + k);
    std::vector<double> ttft, tpot;
    double end = 0, start = 1e30;
    int64_t in_tokens = 0, out_tokens = 0, cached = 0, ideal = 0, failed = 0;
    for (const Record& r : records) {
      if (!r.ok) {
        ++failed;
        continue;
      }
      start = std::min(start, r.sent);
      end = std::max(end, r.last);
      in_tokens += r.prompt;
      out_tokens += r.completion;
      cached += r.cached;
      ideal += r.ideal_cached;
      ttft.push_back(r.first - r.sent);
      if (r.completion > 1) tpot.push_back((r.last - r.first) / static_cast<double>(r.completion - 1));
    }
    if (failed > 0) log::warn("bench serve: {} of {} requests failed at rate {}", failed, requests, rates[k]);
    const double seconds = std::max(end - start, 1e-9);
    const bool saturated = rates[k] <= 0;
    const std::string name = fmt::format("{} rate={} requests={} prompt~{} output~{} shared-prefix=0.5", model_name,
                                         saturated ? std::string("max") : fmt::format("{}/s", rates[k]), requests,
                                         prompt_mean, output_mean);
    const double out_tps = static_cast<double>(out_tokens) / seconds, in_tps = static_cast<double>(in_tokens) / seconds;
    if (saturated) {
      // The pure decode window: every request has its first token (all prefills done) and none
      // has finished, so every step decodes the whole batch. Tokens/s there against the model's
      // raw decode at that batch is the scheduling + HTTP overhead.
      double window_start = 0, window_end = 1e30;
      for (const Record& r : records) {
        if (!r.ok) continue;
        window_start = std::max(window_start, r.first);
        window_end = std::min(window_end, r.last);
      }
      int64_t in_window = 0;
      for (const Record& r : records) {
        for (double t : r.token_times) in_window += t > window_start && t <= window_end;
      }
      if (window_end > window_start && failed == 0) {
        reporter.add(make_result("serve", name, "decode_window_throughput",
                                 static_cast<double>(in_window) / (window_end - window_start), "tokens/s",
                                 fmt::format("raw-decode batch={}", saturated_batch),
                                 static_cast<double>(saturated_batch) / decode_b_s, false));
      }
      reporter.add(make_result("serve", name, "output_throughput", out_tps, "tokens/s",
                               fmt::format("raw-decode batch={}", saturated_batch),
                               static_cast<double>(saturated_batch) / decode_b_s, false));
      reporter.add(make_result("serve", name, "output_throughput", out_tps, "tokens/s", "raw-decode batch=1",
                               1.0 / decode_1_s, false));
      reporter.add(make_result("serve", name, "input_throughput", in_tps, "tokens/s", "raw-prefill batch=8",
                               8.0 * prompt_mean / prefill_batch_s, false));
    } else {
      reporter.add(make_result("serve", name, "output_throughput", out_tps, "tokens/s", "offered",
                               rates[k] * output_mean, false));
      reporter.add(make_result("serve", name, "input_throughput", in_tps, "tokens/s", "offered",
                               rates[k] * prompt_mean, false));
    }
    for (const double p : {0.5, 0.9, 0.99}) {
      const std::string tag = fmt::format("p{}", static_cast<int>(p * 100));
      reporter.add(make_result("serve", name, "ttft_" + tag, percentile(ttft, p), "s", "raw-prefill 1 prompt",
                               prefill_one_s, true));
      reporter.add(make_result("serve", name, "tpot_" + tag, percentile(tpot, p), "s", "raw-decode batch=1",
                               decode_1_s, true));
    }
    reporter.add(make_result("serve", name, "prompt_cache_hit_rate",
                             in_tokens ? static_cast<double>(cached) / static_cast<double>(in_tokens) : 0.0, "fraction",
                             "ideal-prefix-cache", in_tokens ? static_cast<double>(ideal) / static_cast<double>(in_tokens) : 0.0,
                             false));
  }
  if (http) {
    http->stop();
    serving.join();
  }
}

}  // namespace cachalot::bench
