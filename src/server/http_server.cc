#include "server/http_server.h"

#include <httplib.h>

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/error.h"
#include "core/log.h"

namespace cachalot::server {
namespace {

using namespace std::chrono_literals;

void send_json(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status, error_body(e)); }

// Engine refusals become OpenAI errors: a request that can never run is 400, a full queue 429,
// a draining server 503.
ApiError from_engine_error(const Error& e, bool draining) {
  if (e.kind() == ErrorKind::kResourceExhausted) {
    return draining ? ApiError(503, e.what(), {}, "server_shutting_down", "server_error")
                    : ApiError(429, e.what(), {}, "queue_full", "rate_limit_error");
  }
  if (e.kind() == ErrorKind::kInvalidArgument) return ApiError(400, e.what());
  return ApiError(500, e.what(), {}, {}, "server_error");
}

std::string sse(const Json& j) { return "data: " + j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n"; }

}  // namespace

HttpServer::HttpServer(engine::Engine& engine, ServerOptions options)
    : engine_(engine), options_(std::move(options)), http_(std::make_unique<httplib::Server>()) {
  if (engine_.tokenizer() && !engine_.tokenizer()->chat_template().empty()) {
    chat_template_ = std::make_unique<tokenizer::ChatTemplate>(tokenizer::ChatTemplate::from_tokenizer(*engine_.tokenizer()));
  }
  model_info_ = {options_.model_name, engine_.config().max_position_embeddings, engine_.tokenizer(), chat_template_.get()};
  const int threads = options_.max_connections;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
  http_->set_payload_max_length(options_.max_body_bytes);
  http_->set_keep_alive_max_count(1000);
  // cpp-httplib listens with a backlog of 5: a burst of clients overflows it and some of their
  // connections fail. Remember the socket so bind() can raise the backlog with a second listen().
  http_->set_socket_options([this](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_socket_ = static_cast<int>(sock);
  });
  install_routes();
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::bind() {
  port_ = options_.port == 0 ? http_->bind_to_any_port(options_.host) : (http_->bind_to_port(options_.host, options_.port) ? options_.port : -1);
  if (port_ < 0) raise(ErrorKind::kIo, "cannot listen on {}:{} (in use, or not an address of this host)", options_.host, options_.port);
  if (listen_socket_ >= 0 && ::listen(listen_socket_, SOMAXCONN) != 0) {
    log::warn("server: cannot raise the listen backlog: {}", std::strerror(errno));
  }
}

void HttpServer::run() {
  if (!http_->listen_after_bind()) raise(ErrorKind::kIo, "the HTTP server on port {} stopped with an error", port_);
}

bool HttpServer::running() const { return http_->is_running(); }

void HttpServer::stop() {
  if (http_ && http_->is_running()) http_->stop();
}

void HttpServer::wait_responses(std::chrono::milliseconds timeout) {
  std::unique_lock lock(active_mutex_);
  active_done_.wait_for(lock, timeout, [&] { return active_responses_ == 0; });
}

std::string HttpServer::metrics_text() const {
  std::string out = engine_.metrics().render_prometheus();
  out += "# HELP cachalot_http_responses_total HTTP responses by status class.\n"
         "# TYPE cachalot_http_responses_total counter\n";
  out += fmt::format("cachalot_http_responses_total{{code=\"2xx\"}} {}\n", responses_2xx_.load());
  out += fmt::format("cachalot_http_responses_total{{code=\"4xx\"}} {}\n", responses_4xx_.load());
  out += fmt::format("cachalot_http_responses_total{{code=\"5xx\"}} {}\n", responses_5xx_.load());
  return out;
}

void HttpServer::install_routes() {
  httplib::Server& http = *http_;
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (engine_.draining()) send_json(res, 503, Json{{"status", "shutting down"}});
    else send_json(res, 200, Json{{"status", "ok"}});
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
  // EPLB: the expert loads of the window (the input `cachalot eplb --loads` takes), and a
  // rebalance on command (with --ep; it takes effect once every rank has prepared it).
  http.Get("/eplb/loads", [this](const httplib::Request&, httplib::Response& res) {
    const engine::MetricsSnapshot m = engine_.metrics().snapshot();
    Json loads = Json::array();
    if (m.expert_load_layers > 0) {
      const size_t experts = m.expert_loads.size() / static_cast<size_t>(m.expert_load_layers);
      for (int64_t l = 0; l < m.expert_load_layers; ++l)
        loads.push_back(std::vector<float>(m.expert_loads.begin() + static_cast<std::ptrdiff_t>(l * experts),
                                           m.expert_loads.begin() + static_cast<std::ptrdiff_t>((l + 1) * experts)));
    }
    send_json(res, 200,
              Json{{"loads", loads},
                   {"placement_version", m.expert_placement_version},
                   {"balancedness", m.eplb_balancedness},
                   {"rebalances", m.eplb_rebalances}});
  });
  http.Post("/eplb/rebalance", [this](const httplib::Request&, httplib::Response& res) {
    try {
      engine_.request_rebalance();
      send_json(res, 202, Json{{"status", "rebalance requested"}});
    } catch (const Error& e) {
      send_error(res, ApiError(400, e.what()));
    }
  });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200,
              Json{{"object", "list"},
                   {"data", Json::array({Json{{"id", options_.model_name},
                                              {"object", "model"},
                                              {"created", 0},
                                              {"owned_by", "cachalot"},
                                              {"max_model_len", engine_.config().max_position_embeddings}}})}});
  });

  auto completion = [this](Endpoint endpoint) {
    return [this, endpoint](const httplib::Request& req, httplib::Response& res) {
      // Counted while the response is in flight; a streamed one ends in its releaser.
      auto active = std::shared_ptr<void>(nullptr, [this](void*) {
        std::lock_guard lock(active_mutex_);
        if (--active_responses_ == 0) active_done_.notify_all();
      });
      {
        std::lock_guard lock(active_mutex_);
        ++active_responses_;
      }
      std::shared_ptr<ParsedRequest> parsed;
      std::shared_ptr<engine::RequestStream> stream;
      try {
        parsed = std::make_shared<ParsedRequest>(parse_request(endpoint, req.body, model_info_));
        stream = engine_.submit(parsed->params);
      } catch (const ApiError& e) {
        send_error(res, e);
        return;
      } catch (const Error& e) {
        send_error(res, from_engine_error(e, engine_.draining()));
        return;
      }
      auto builder = std::make_shared<ResponseBuilder>(*parsed, model_info_);
      if (!parsed->stream) {
        while (true) {
          auto event = stream->next(1000ms);
          if (!event) continue;
          if (event->token) builder->record(*event->token);
          if (event->finish) {
            if (const auto error = finish_error(*event->finish)) send_error(res, *error);
            else send_json(res, 200, builder->full_response(*event->finish));
            return;
          }
        }
      }
      // Server-Sent Events: one chunk per token, the finish chunk, usage if asked, [DONE]. A write
      // that fails means the client is gone: the request is cancelled and its blocks freed.
      auto started = std::make_shared<bool>(false);
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream",
          [parsed, stream, builder, started](size_t, httplib::DataSink& sink) {
            auto write = [&](const std::string& s) {
              if (sink.write(s.data(), s.size())) return true;
              stream->cancel();
              return false;
            };
            if (!*started) {
              *started = true;
              if (parsed->endpoint == Endpoint::kChat && !write(sse(builder->first_chat_chunk()))) return false;
            }
            auto event = stream->next(200ms);
            if (!event) return sink.is_writable() || (stream->cancel(), false);
            if (event->token) return write(sse(builder->token_chunk(*event->token)));
            const auto& f = *event->finish;
            if (const auto error = finish_error(f)) {
              if (!write(sse(error_body(*error)))) return false;
            } else {
              if (!write(sse(builder->finish_chunk(f)))) return false;
              if (parsed->include_usage && !write(sse(builder->usage_chunk(f)))) return false;
            }
            if (!write("data: [DONE]\n\n")) return false;
            sink.done();
            return true;
          },
          [stream, active](bool success) {
            if (!success) stream->cancel();
          });
    };
  };
  http.Post("/v1/completions", completion(Endpoint::kCompletions));
  http.Post("/v1/chat/completions", completion(Endpoint::kChat));

  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const ApiError e(res.status, fmt::format("{} {}: {}", req.method, req.path,
                                             res.status == 404 ? "no such endpoint" : "request failed with HTTP " + std::to_string(res.status)),
                     {}, res.status == 404 ? "not_found" : "");
    send_json(res, res.status, error_body(e));
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log::error("server: request failed: {}", what);
    send_json(res, 500, error_body(ApiError(500, "internal error: " + what, {}, {}, "server_error")));
  });
  http.set_logger([this](const httplib::Request&, const httplib::Response& res) {
    if (res.status >= 500) ++responses_5xx_;
    else if (res.status >= 400) ++responses_4xx_;
    else ++responses_2xx_;
  });
}

}  // namespace cachalot::server
