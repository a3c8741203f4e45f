// Trace recorder: scoped spans per thread, written as Chrome trace JSON ("traceEvents", complete
// events with ph "X", pid/tid, args) that Perfetto and chrome://tracing load. Every module
// records its kernels and its communication here.
//
//   { trace::Span span("gemm_fp8_nt", "gemm"); span.arg("m", m).arg("n", n); ... }
//
// Disabled (the default), a Span costs one relaxed atomic load and a branch. Each thread
// records into its own buffer; a thread is one track ("tid"), named with set_thread_name, and
// may say which process track ("pid", e.g. an EP rank) it belongs to.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace cachalot::trace {

void set_enabled(bool enabled);
bool enabled();

// Names the calling thread's track; pid < 0 keeps the process default.
void set_thread_name(std::string name, int pid = -1);
// The default process track of this process: id (e.g. rank) and name.
void set_process(int pid, std::string name);

// Drops everything recorded so far.
void clear();
// Number of events recorded (all threads).
size_t event_count();

// The Chrome trace JSON of everything recorded so far.
std::string to_chrome_json();
// Writes it atomically; throws Error naming the path on failure.
void write_chrome_json(const std::string& path);

// Nanoseconds on the trace clock (steady, since process start).
int64_t now_ns();

class Span {
 public:
  explicit Span(std::string_view name, const char* category = "cachalot");
  ~Span();
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;

  Span& arg(std::string_view key, int64_t value);
  Span& arg(std::string_view key, int value) { return arg(key, static_cast<int64_t>(value)); }
  Span& arg(std::string_view key, double value);
  Span& arg(std::string_view key, std::string_view value);
  Span& arg(std::string_view key, const char* value) { return arg(key, std::string_view(value)); }

 private:
  void append_arg(std::string_view key, const std::string& json_value);

  bool active_;
  int64_t start_ns_ = 0;
  std::string name_;
  const char* category_ = nullptr;
  std::string args_;  // JSON members without braces: "m":16,"n":7168
};

}  // namespace cachalot::trace
