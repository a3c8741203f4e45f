#include "core/trace.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/file_io.h"

namespace cachalot::trace {
namespace {

struct Event {
  std::string name;
  const char* category;
  int64_t start_ns;
  int64_t duration_ns;
  std::string args;
};

struct Track {
  int tid = 0;
  int pid = -1;  // -1: the process default
  std::string name;
  std::mutex mutex;  // taken by the owning thread to append and by writers to read
  std::vector<Event> events;
};

std::atomic<bool> g_enabled{false};

struct Registry {
  std::mutex mutex;
  std::vector<std::shared_ptr<Track>> tracks;
  int next_tid = 1;
  int pid = static_cast<int>(::getpid());
  std::string process_name = "cachalot";
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: threads may record during exit
  return *r;
}

Track& this_thread_track() {
  thread_local std::shared_ptr<Track> track = [] {
    auto t = std::make_shared<Track>();
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    t->tid = r.next_tid++;
    t->name = "thread " + std::to_string(t->tid);
    r.tracks.push_back(t);
    return t;
  }();
  return *track;
}

const auto kEpoch = std::chrono::steady_clock::now();

std::string quote(std::string_view s) { return nlohmann::json(std::string(s)).dump(); }

// Chrome traces count in microseconds; keep nanosecond resolution as a fraction.
std::string micros(int64_t ns) { return fmt::format("{}.{:03}", ns / 1000, ns % 1000); }

}  // namespace

void set_enabled(bool enabled) { g_enabled.store(enabled, std::memory_order_relaxed); }
bool enabled() { return g_enabled.load(std::memory_order_relaxed); }

void set_thread_name(std::string name, int pid) {
  Track& t = this_thread_track();
  std::lock_guard lock(t.mutex);
  t.name = std::move(name);
  t.pid = pid;
}

void set_process(int pid, std::string name) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  r.pid = pid;
  r.process_name = std::move(name);
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - kEpoch)
      .count();
}

void clear() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  for (auto& t : r.tracks) {
    std::lock_guard track_lock(t->mutex);
    t->events.clear();
  }
}

size_t event_count() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  size_t n = 0;
  for (auto& t : r.tracks) {
    std::lock_guard track_lock(t->mutex);
    n += t->events.size();
  }
  return n;
}

std::string to_chrome_json() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::string out = "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
  bool first = true;
  auto emit = [&](const std::string& event) {
    if (!first) out += ",\n";
    first = false;
    out += event;
  };
  std::vector<int> pids = {r.pid};
  for (auto& t : r.tracks) {
    std::lock_guard track_lock(t->mutex);
    const int pid = t->pid < 0 ? r.pid : t->pid;
    if (std::find(pids.begin(), pids.end(), pid) == pids.end()) pids.push_back(pid);
    const std::string ids = "\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(t->tid);
    emit("{\"ph\":\"M\",\"name\":\"thread_name\"," + ids + ",\"args\":{\"name\":" + quote(t->name) + "}}");
    emit("{\"ph\":\"M\",\"name\":\"thread_sort_index\"," + ids + ",\"args\":{\"sort_index\":" +
         std::to_string(t->tid) + "}}");
    for (const Event& e : t->events) {
      emit("{\"ph\":\"X\",\"name\":" + quote(e.name) + ",\"cat\":" + quote(e.category) + "," + ids +
           ",\"ts\":" + micros(e.start_ns) + ",\"dur\":" + micros(e.duration_ns) + ",\"args\":{" +
           e.args + "}}");
    }
  }
  for (int pid : pids) {
    const std::string name = pid == r.pid ? r.process_name : "rank " + std::to_string(pid);
    emit("{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":" + std::to_string(pid) +
         ",\"args\":{\"name\":" + quote(name) + "}}");
  }
  out += "\n]}\n";
  return out;
}

void write_chrome_json(const std::string& path) { write_text_file(path, to_chrome_json()); }

Span::Span(std::string_view name, const char* category)
    : active_(g_enabled.load(std::memory_order_relaxed)) {
  if (!active_) return;
  name_ = name;
  category_ = category;
  start_ns_ = now_ns();
}

Span::~Span() {
  if (!active_) return;
  const int64_t end_ns = now_ns();
  Track& t = this_thread_track();
  std::lock_guard lock(t.mutex);
  t.events.push_back(Event{std::move(name_), category_, start_ns_, end_ns - start_ns_, std::move(args_)});
}

void Span::append_arg(std::string_view key, const std::string& json_value) {
  if (!args_.empty()) args_ += ',';
  args_ += quote(key);
  args_ += ':';
  args_ += json_value;
}

Span& Span::arg(std::string_view key, int64_t value) {
  if (active_) append_arg(key, std::to_string(value));
  return *this;
}

Span& Span::arg(std::string_view key, double value) {
  if (active_) append_arg(key, nlohmann::json(value).dump());
  return *this;
}

Span& Span::arg(std::string_view key, std::string_view value) {
  if (active_) append_arg(key, quote(value));
  return *this;
}

}  // namespace cachalot::trace
