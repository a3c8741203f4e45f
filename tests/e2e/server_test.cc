// `cachalot serve` end to end over HTTP on a free loopback port: the tiny-dsv3 fixture (token-id
// prompts, exact mode) and a tiny random checkpoint with DeepSeek-V3's tokenizer (text, chat).
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/test_support.h"

namespace cachalot {
namespace {

using nlohmann::json;
using testing::ServerProcess;

json post(int port, const std::string& path, const json& body, int* status = nullptr) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(120, 0);
  const auto res = client.Post(path, body.dump(), "application/json");
  if (!res) throw std::runtime_error("no response from the server");
  if (status) *status = res->status;
  return json::parse(res->body);
}

int post_raw(int port, const std::string& path, const std::string& body) {
  httplib::Client client("127.0.0.1", port);
  const auto res = client.Post(path, body, "application/json");
  return res ? res->status : -1;
}

struct Streamed {
  std::vector<int32_t> token_ids;
  std::string text;
  json usage;
  std::string finish_reason;
  bool done = false;
  int chunks = 0;
  std::string error;  // transport error or non-200 status
};

// Reads an SSE response; stop_after > 0 closes the connection after that many chunks.
Streamed post_stream(int port, const std::string& path, json body, int stop_after = 0) {
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  Streamed s;
  std::string buffer;
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(120, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buffer.append(data, n);
    std::size_t end;
    while ((end = buffer.find("\n\n")) != std::string::npos) {
      const std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      const std::string payload = event.substr(6);
      if (payload == "[DONE]") {
        s.done = true;
        continue;
      }
      const json chunk = json::parse(payload);
      if (chunk.contains("usage")) s.usage = chunk["usage"];
      for (const auto& choice : chunk.value("choices", json::array())) {
        for (const auto& id : choice.value("token_ids", json::array())) s.token_ids.push_back(id.get<int32_t>());
        if (choice.contains("text")) s.text += choice["text"].get<std::string>();
        if (choice.contains("delta") && choice["delta"].contains("content")) s.text += choice["delta"]["content"].get<std::string>();
        if (!choice["finish_reason"].is_null()) s.finish_reason = choice["finish_reason"];
      }
      ++s.chunks;
      if (stop_after > 0 && s.chunks >= stop_after) return false;
    }
    return true;
  };
  const auto res = client.send(req);
  if (!res) s.error = httplib::to_string(res.error());
  else if (res->status != 200) s.error = "HTTP " + std::to_string(res->status);
  return s;
}

std::vector<int32_t> prompt_of(int length, int seed) {
  std::vector<int32_t> p(static_cast<std::size_t>(length));
  for (int i = 0; i < length; ++i) p[i] = (i * 31 + seed * 7 + 3) % 1000;
  return p;
}

std::string ids_csv(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

int64_t metric(int port, const std::string& name) {
  httplib::Client client("127.0.0.1", port);
  const auto res = client.Get("/metrics");
  if (!res) return -1;
  const std::size_t at = res->body.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stoll(res->body.substr(at + name.size() + 2));
}

class FixtureServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = testing::fixture_path("tiny-dsv3");
    if (dir_.empty()) return;
    server_ = new ServerProcess({"--model", dir_, "--precision", "exact", "--kv-cache-gb", "0.05"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (!server_) GTEST_SKIP() << "fixture tiny-dsv3 not found under " << testing::fixtures_dir();
  }
  static int port() { return server_->port(); }
  static inline std::string dir_;
  static inline ServerProcess* server_ = nullptr;
};

TEST_F(FixtureServer, CompletionsMatchGenerateStreamedAndNot) {
  const auto prompt = prompt_of(33, 1);
  const auto gen = testing::run_cachalot({"generate", "--model", dir_, "--prompt-ids", ids_csv(prompt), "--max-tokens",
                                          "10", "--precision", "exact", "--ignore-eos", "--json"});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  const auto expected = json::parse(gen.out).at("output_ids").get<std::vector<int32_t>>();
  const json body = {{"model", "tiny-dsv3"}, {"prompt", prompt}, {"max_tokens", 10}, {"temperature", 0}, {"ignore_eos", true}};
  int status = 0;
  const json full = post(port(), "/v1/completions", body, &status);
  ASSERT_EQ(status, 200) << full.dump();
  EXPECT_EQ(full["object"], "text_completion");
  EXPECT_EQ(full["choices"][0]["token_ids"].get<std::vector<int32_t>>(), expected);
  EXPECT_EQ(full["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(full["usage"]["prompt_tokens"], 33);
  EXPECT_EQ(full["usage"]["completion_tokens"], 10);
  const Streamed s = post_stream(port(), "/v1/completions", body);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.token_ids, expected);
  EXPECT_EQ(s.finish_reason, "length");
  EXPECT_EQ(s.usage["completion_tokens"], 10);
}

TEST_F(FixtureServer, SixtyFourConcurrentStreamsAllComplete) {
  std::vector<Streamed> results(64);
  std::vector<std::thread> clients;
  for (int i = 0; i < 64; ++i) {
    clients.emplace_back([&, i] {
      results[i] = post_stream(port(), "/v1/completions",
                               {{"prompt", prompt_of(5 + i, 100 + i)}, {"max_tokens", 8}, {"temperature", 0.8}, {"seed", i},
                                {"ignore_eos", true}});
    });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < 64; ++i) {
    EXPECT_TRUE(results[i].done) << "request " << i << ": " << results[i].error << " chunks " << results[i].chunks;
    EXPECT_EQ(results[i].token_ids.size(), 8u) << "request " << i;
    EXPECT_EQ(results[i].usage["completion_tokens"], 8) << "request " << i;
  }
}

TEST_F(FixtureServer, StopTokenIdsEndTheCompletion) {
  const json body = {{"prompt", prompt_of(20, 3)}, {"max_tokens", 10}, {"temperature", 0}, {"ignore_eos", true}};
  const auto full = post(port(), "/v1/completions", body)["choices"][0]["token_ids"].get<std::vector<int32_t>>();
  ASSERT_EQ(full.size(), 10u);
  json stopping = body;
  stopping["stop_token_ids"] = {full[3]};
  const json cut = post(port(), "/v1/completions", stopping);
  const auto ids = cut["choices"][0]["token_ids"].get<std::vector<int32_t>>();
  const auto first = std::find(full.begin(), full.end(), full[3]) - full.begin();
  EXPECT_EQ(ids, std::vector<int32_t>(full.begin(), full.begin() + first + 1));
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
}

TEST_F(FixtureServer, RepeatedPromptIsServedFromThePrefixCache) {
  const json body = {{"prompt", prompt_of(150, 42)}, {"max_tokens", 4}, {"temperature", 0}, {"ignore_eos", true}};
  const json first = post(port(), "/v1/completions", body);
  const json second = post(port(), "/v1/completions", body);
  EXPECT_EQ(first["usage"]["prompt_cache_hit_tokens"], 0);
  EXPECT_EQ(second["usage"]["prompt_cache_hit_tokens"], 128);
  EXPECT_EQ(second["usage"]["prompt_cache_miss_tokens"], 22);
  EXPECT_EQ(second["usage"]["prompt_tokens_details"]["cached_tokens"], 128);
  EXPECT_EQ(second["choices"][0]["token_ids"], first["choices"][0]["token_ids"]);
}

TEST_F(FixtureServer, BadInputGetsOpenAIErrors) {
  EXPECT_EQ(post_raw(port(), "/eplb/rebalance", "{}"), 400);  // no expert parallelism
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", "invalid_json"},
      {R"({"prompt": [1, 2], "max_tokens": "ten"})", "max_tokens"},
      {R"({"model": "gpt-4", "prompt": [1, 2]})", "model_not_found"},
      {R"({"prompt": [1, 2], "max_tokens": 0})", "max_tokens"},
      {R"({"prompt": [1, 2], "max_tokens": 5000})", "context_length_exceeded"},
      {R"({"prompt": [1, 2], "n": 2})", "n=1"},
      {R"({"prompt": [1, 2], "temperature": 7})", "temperature"},
      {R"({"prompt": [1, 99999]})", "outside the vocabulary"},
      {R"({"prompt": "text needs a tokenizer"})", "tokenizer_missing"},
      {R"({"prompt": [1, 2], "stop": 5})", "stop"},
      {R"({"max_tokens": 3})", "prompt"},
  };
  for (const auto& [body, fragment] : cases) {
    httplib::Client client("127.0.0.1", port());
    const auto res = client.Post("/v1/completions", body, "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << body;
    const json error = json::parse(res->body);
    ASSERT_TRUE(error.contains("error")) << res->body;
    EXPECT_EQ(error["error"]["type"], "invalid_request_error");
    EXPECT_NE(res->body.find(fragment), std::string::npos) << body << " -> " << res->body;
  }
  std::string long_prompt = "[1";
  for (int i = 0; i < 1100; ++i) long_prompt += ",5";
  EXPECT_EQ(post_raw(port(), "/v1/completions", "{\"prompt\": " + long_prompt + "]}"), 400);
  EXPECT_EQ(post_raw(port(), "/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}]})"), 400);
  httplib::Client client("127.0.0.1", port());
  EXPECT_EQ(client.Get("/v1/nothing")->status, 404);
  EXPECT_EQ(client.Get("/health")->status, 200);
  const auto models = json::parse(client.Get("/v1/models")->body);
  EXPECT_EQ(models["data"][0]["id"], "tiny-dsv3");
}

TEST_F(FixtureServer, ClientDisconnectMidStreamFreesItsBlocks) {
  const int64_t baseline = metric(port(), "cachalot_kv_blocks_used");
  const int64_t cancelled = metric(port(), "cachalot_requests_cancelled_total");
  const Streamed s = post_stream(port(), "/v1/completions",
                                 {{"prompt", prompt_of(100, 5)}, {"max_tokens", 900}, {"ignore_eos", true}}, 3);
  EXPECT_EQ(s.chunks, 3);
  EXPECT_FALSE(s.done);
  int64_t used = -1;
  for (int i = 0; i < 200; ++i) {
    used = metric(port(), "cachalot_kv_blocks_used");
    if (used == baseline && metric(port(), "cachalot_requests_cancelled_total") == cancelled + 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(used, baseline);
  EXPECT_EQ(metric(port(), "cachalot_requests_cancelled_total"), cancelled + 1);
}

TEST(ServerExpertParallel, ConcurrentRequestsOverFourRanksMatchGenerate) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  ServerProcess server({"--model", dir, "--precision", "exact", "--kv-cache-gb", "0.05", "--ep", "4"});
  std::vector<std::vector<int32_t>> expected;
  for (int i = 0; i < 3; ++i) {
    const auto gen = testing::run_cachalot({"generate", "--model", dir, "--prompt-ids", ids_csv(prompt_of(20 + 7 * i, i)),
                                            "--max-tokens", "8", "--precision", "exact", "--ignore-eos", "--json"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    expected.push_back(json::parse(gen.out).at("output_ids").get<std::vector<int32_t>>());
  }
  // Three requests at once: the engine batches them, the model spreads them over the ranks.
  std::vector<std::thread> clients;
  std::vector<std::vector<int32_t>> got(3);
  for (int i = 0; i < 3; ++i)
    clients.emplace_back([&, i] {
      const json body = {{"model", "tiny-dsv3"}, {"prompt", prompt_of(20 + 7 * i, i)}, {"max_tokens", 8}, {"temperature", 0},
                         {"ignore_eos", true}};
      got[i] = post_stream(server.port(), "/v1/completions", body).token_ids;
    });
  for (std::thread& c : clients) c.join();
  EXPECT_EQ(got, expected);
  // EPLB on command: the loads counted so far place the experts again (with a redundant slot per
  // rank); once the ranks switch, completions are unchanged.
  int status = 0;
  post(server.port(), "/eplb/rebalance", json::object(), &status);
  EXPECT_EQ(status, 202);
  const json body = {{"model", "tiny-dsv3"}, {"prompt", prompt_of(20, 0)}, {"max_tokens", 8}, {"temperature", 0},
                     {"ignore_eos", true}};
  for (int i = 0; i < 20 && metric(server.port(), "cachalot_eplb_placement_version") != 1; ++i)
    EXPECT_EQ(post_stream(server.port(), "/v1/completions", body).token_ids, expected[0]);
  EXPECT_EQ(metric(server.port(), "cachalot_eplb_placement_version"), 1);
  EXPECT_EQ(metric(server.port(), "cachalot_eplb_rebalances_total"), 1);
  EXPECT_EQ(post_stream(server.port(), "/v1/completions", body).token_ids, expected[0]);
  httplib::Client client("127.0.0.1", server.port());
  const auto loads = client.Get("/eplb/loads");
  ASSERT_TRUE(loads && loads->status == 200);
  const json l = json::parse(loads->body);
  ASSERT_GE(l["loads"].size(), 1u);
  double total = 0;
  for (const auto& layer : l["loads"])
    for (const auto& v : layer) total += v.get<double>();
  EXPECT_GT(total, 0);
  EXPECT_GT(l["balancedness"].get<double>(), 0);
}

TEST(ServerExpertParallel, RanksAsProcessesOverShm) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  ServerProcess server({"--model", dir, "--precision", "exact", "--kv-cache-gb", "0.05", "--ep", "2", "--ep-transport", "shm"});
  const auto gen = testing::run_cachalot({"generate", "--model", dir, "--prompt-ids", ids_csv(prompt_of(30, 4)), "--max-tokens",
                                          "8", "--precision", "exact", "--ignore-eos", "--json"});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  const json body = {{"model", "tiny-dsv3"}, {"prompt", prompt_of(30, 4)}, {"max_tokens", 8}, {"temperature", 0},
                     {"ignore_eos", true}};
  EXPECT_EQ(post_stream(server.port(), "/v1/completions", body).token_ids,
            json::parse(gen.out).at("output_ids").get<std::vector<int32_t>>());
  // SIGTERM reaches rank 0 through the launching process; every rank exits cleanly.
  EXPECT_EQ(server.stop(), 0) << server.stderr_text();
}

TEST(ServerLimits, FullQueueIs429AndSigtermFinishesRequestsInFlight) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  ServerProcess server({"--model", dir, "--max-running", "1", "--max-queue", "0", "--kv-cache-gb", "0.05"});
  std::atomic<bool> started{false};
  Streamed long_request;
  std::thread t([&] {
    long_request = post_stream(server.port(), "/v1/completions",
                               {{"prompt", prompt_of(10, 1)}, {"max_tokens", 300}, {"ignore_eos", true}});
  });
  for (int i = 0; i < 200 && metric(server.port(), "cachalot_running_requests") != 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  int status = 0;
  const json refused = post(server.port(), "/v1/completions", {{"prompt", {1, 2}}, {"max_tokens", 2}}, &status);
  EXPECT_EQ(status, 429) << refused.dump();
  EXPECT_EQ(refused["error"]["code"], "queue_full");
  // SIGTERM while the long request streams: it still completes, then the server exits 0.
  EXPECT_EQ(server.stop(), 0) << server.stderr_text();
  t.join();
  EXPECT_TRUE(long_request.done);
  EXPECT_EQ(long_request.token_ids.size(), 300u);
  EXPECT_EQ(long_request.finish_reason, "length");
}

TEST(ServerText, ChatAndTextCompletionsWithTheTokenizer) {
  CACHALOT_REQUIRE_FIXTURE(tokenizer_dir, "tokenizer");
  testing::TempDir tmp;
  const std::string model = tmp.file("tiny-tok");
  ASSERT_EQ(testing::run_cachalot({"init", "--preset", "tiny", "--out", model, "--seed", "4", "--tokenizer", tokenizer_dir}).exit_code, 0);
  ServerProcess server({"--model", model, "--kv-cache-gb", "0.05"});
  const json chat_body = {{"model", "tiny-tok"},
                          {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "What is MLA?"}}}},
                          {"max_tokens", 12}, {"temperature", 0}, {"ignore_eos", true}, {"logprobs", true}, {"top_logprobs", 5}};
  int status = 0;
  const json chat = post(server.port(), "/v1/chat/completions", chat_body, &status);
  ASSERT_EQ(status, 200) << chat.dump();
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  // <｜begin▁of▁sentence｜> Be| brief|. <｜User｜> What| is| MLA|? <｜Assistant｜>
  EXPECT_EQ(chat["usage"]["prompt_tokens"], 10);
  ASSERT_EQ(chat["choices"][0]["logprobs"]["content"].size(), 12u);
  EXPECT_EQ(chat["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 5u);
  // Streaming gives the same text, in deltas of whole UTF-8 (each chunk parsed as JSON).
  const Streamed s = post_stream(server.port(), "/v1/chat/completions", chat_body);
  EXPECT_EQ(s.text, chat["choices"][0]["message"]["content"].get<std::string>());
  EXPECT_TRUE(s.done);
  // A text prompt gets BOS; stop strings cut the text.
  const json text = post(server.port(), "/v1/completions", {{"prompt", "Hello world"}, {"max_tokens", 5}, {"temperature", 0}});
  EXPECT_EQ(text["usage"]["prompt_tokens"], 3);
  const std::string full = text["choices"][0]["text"];
  // A stop string of the second and third characters of that text (whole UTF-8 characters).
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < full.size(); ++i) {
    if ((static_cast<unsigned char>(full[i]) & 0xC0) != 0x80) starts.push_back(i);
  }
  starts.push_back(full.size());
  if (starts.size() > 3) {
    const std::string stop = full.substr(starts[1], starts[3] - starts[1]);
    const json cut = post(server.port(), "/v1/completions",
                          {{"prompt", "Hello world"}, {"max_tokens", 5}, {"temperature", 0}, {"stop", stop}});
    EXPECT_EQ(cut["choices"][0]["text"], full.substr(0, full.find(stop)));
    EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
  }
}

}  // namespace
}  // namespace cachalot
