// The OpenAI-compatible HTTP server (cpp-httplib from Debian): POST /v1/completions and
// /v1/chat/completions (JSON, or Server-Sent Events with stream=true), GET /v1/models, /health
// and /metrics, in front of one engine. Each connection has a thread of a pool sized for the
// concurrent streams expected (a streaming response holds its thread until it ends).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/engine.h"
#include "server/openai_api.h"

namespace httplib {
class Server;
}

namespace cachalot::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;               // 0: any free port (see port())
  std::string model_name;        // what /v1/models lists and requests must name
  int max_connections = 256;     // threads serving connections
  std::size_t max_body_bytes = 16u << 20;
};

class HttpServer {
 public:
  HttpServer(engine::Engine& engine, ServerOptions options);
  ~HttpServer();

  // Binds the socket (Error(kIo) if it cannot); the port is known after this.
  void bind();
  int port() const { return port_; }
  // Serves until stop() (blocks).
  void run();
  bool running() const;
  void stop();
  // Waits until no completion response is being written (after the engine drained, the last
  // chunks and [DONE] still have to go out), at most `timeout`.
  void wait_responses(std::chrono::milliseconds timeout);

 private:
  void install_routes();
  std::string metrics_text() const;

  engine::Engine& engine_;
  ServerOptions options_;
  std::unique_ptr<tokenizer::ChatTemplate> chat_template_;
  ModelInfo model_info_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  int listen_socket_ = -1;
  std::mutex active_mutex_;
  std::condition_variable active_done_;
  int active_responses_ = 0;
  std::atomic<uint64_t> responses_2xx_{0}, responses_4xx_{0}, responses_5xx_{0};
};

}  // namespace cachalot::server
