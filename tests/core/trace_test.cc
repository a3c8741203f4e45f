#include "core/trace.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/file_io.h"
#include "tests/support/test_support.h"

namespace cachalot {
namespace {

using nlohmann::json;

class TraceTest : public ::testing::Test {
 protected:
  void SetUp() override { trace::clear(); }
  void TearDown() override {
    trace::set_enabled(false);
    trace::clear();
  }
  static std::vector<json> complete_events(const json& doc) {
    std::vector<json> out;
    for (const auto& e : doc.at("traceEvents"))
      if (e.at("ph") == "X") out.push_back(e);
    return out;
  }
};

TEST_F(TraceTest, DisabledRecordsNothing) {
  trace::set_enabled(false);
  { trace::Span span("ignored"); span.arg("k", 1); }
  EXPECT_EQ(trace::event_count(), 0u);
}

TEST_F(TraceTest, SpansBecomeCompleteEventsWithArgs) {
  trace::set_enabled(true);
  trace::set_thread_name("main \"thread\"");
  {
    trace::Span outer("outer", "test");
    outer.arg("m", 16).arg("ratio", 0.5).arg("label", "a\"b\\c");
    trace::Span inner("inner", "test");
  }
  const json doc = json::parse(trace::to_chrome_json());
  const auto events = complete_events(doc);
  ASSERT_EQ(events.size(), 2u);
  const json& outer = events[1]["name"] == "outer" ? events[1] : events[0];
  const json& inner = events[1]["name"] == "outer" ? events[0] : events[1];
  EXPECT_EQ(outer["cat"], "test");
  EXPECT_EQ(outer["args"]["m"], 16);
  EXPECT_EQ(outer["args"]["ratio"], 0.5);
  EXPECT_EQ(outer["args"]["label"], "a\"b\\c");
  EXPECT_EQ(outer["pid"], inner["pid"]);
  EXPECT_EQ(outer["tid"], inner["tid"]);
  // The inner span lies within the outer one.
  EXPECT_GE(inner["ts"].get<double>(), outer["ts"].get<double>());
  EXPECT_LE(inner["ts"].get<double>() + inner["dur"].get<double>(),
            outer["ts"].get<double>() + outer["dur"].get<double>() + 1e-3);
  bool named = false;
  for (const auto& e : doc["traceEvents"])
    if (e["ph"] == "M" && e["name"] == "thread_name" && e["args"]["name"] == "main \"thread\"") named = true;
  EXPECT_TRUE(named);
}

TEST_F(TraceTest, ThreadsGetTheirOwnTracksAndProcesses) {
  trace::set_enabled(true);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r)
    threads.emplace_back([r] {
      trace::set_thread_name("rank " + std::to_string(r) + " compute", 100 + r);
      for (int i = 0; i < 10; ++i) trace::Span span("work");
    });
  for (auto& t : threads) t.join();
  const json doc = json::parse(trace::to_chrome_json());
  std::set<int> tids, pids;
  for (const auto& e : complete_events(doc)) {
    tids.insert(e["tid"].get<int>());
    pids.insert(e["pid"].get<int>());
  }
  EXPECT_EQ(tids.size(), 3u);
  EXPECT_EQ(pids, (std::set<int>{100, 101, 102}));
  int process_names = 0;
  for (const auto& e : doc["traceEvents"])
    if (e["ph"] == "M" && e["name"] == "process_name") ++process_names;
  EXPECT_GE(process_names, 3);
}

TEST_F(TraceTest, WritesAFileThatParses) {
  trace::set_enabled(true);
  { trace::Span span("written"); }
  testing::TempDir dir;
  trace::write_chrome_json(dir.file("t.json"));
  const json doc = json::parse(read_text_file(dir.file("t.json")));
  EXPECT_EQ(complete_events(doc).size(), 1u);
  EXPECT_THROW(trace::write_chrome_json(dir.file("missing/dir/t.json")), Error);
}

}  // namespace
}  // namespace cachalot
