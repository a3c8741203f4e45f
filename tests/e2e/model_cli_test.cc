// `cachalot generate` and `cachalot init` end to end: the golden greedy continuation of the
// tiny-dsv3 fixture from the command line (also with expert parallelism over threads, shm
// processes and mpirun), a random checkpoint that loads and generates, and clear one-line
// errors for bad input.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/support/test_support.h"

namespace cachalot {
namespace {

using testing::run_cachalot;

TEST(ModelCli, GenerateReproducesTheGoldenContinuationInExactMode) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  std::ifstream in(dir + "/golden.json");
  const auto golden = nlohmann::json::parse(in).at("cases").at(1);
  std::string ids;
  for (const auto& id : golden.at("prompt")) ids += (ids.empty() ? "" : ",") + std::to_string(id.get<int>());
  const auto r = run_cachalot({"generate", "--model", dir, "--prompt-ids", ids, "--max-tokens", "12", "--precision",
                               "exact", "--ignore-eos", "--json", "--logits"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out.at("output_ids"), golden.at("greedy_continuation"));
  EXPECT_EQ(out.at("prompt_ids"), golden.at("prompt"));
  ASSERT_EQ(out.at("prompt_logits").size(), golden.at("prompt").size());
  EXPECT_NEAR(out.at("prompt_logits")[0][5].get<double>(), golden.at("prefill_logits")[0][5].get<double>(), 1e-3);
}

TEST(ModelCli, ExpertParallelGenerateMatchesOneRankInExactMode) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  std::ifstream in(dir + "/golden.json");
  const auto golden = nlohmann::json::parse(in).at("cases").at(2);
  std::string ids;
  for (const auto& id : golden.at("prompt")) ids += (ids.empty() ? "" : ",") + std::to_string(id.get<int>());
  for (const char* ep : {"2", "4"})
    for (const char* overlap : {"on", "off"}) {
      const auto r = run_cachalot({"generate", "--model", dir, "--prompt-ids", ids, "--max-tokens", "12", "--precision",
                                   "exact", "--ignore-eos", "--json", "--ep", ep, "--ep-overlap", overlap});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(nlohmann::json::parse(r.out).at("output_ids"), golden.at("greedy_continuation")) << "--ep " << ep << " " << overlap;
    }
}

TEST(ModelCli, ExpertParallelGenerateOverProcesses) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  std::ifstream in(dir + "/golden.json");
  const auto golden = nlohmann::json::parse(in).at("cases").at(0);
  std::string ids;
  for (const auto& id : golden.at("prompt")) ids += (ids.empty() ? "" : ",") + std::to_string(id.get<int>());
  const std::vector<std::string> args = {"generate", "--model", dir, "--prompt-ids", ids, "--max-tokens", "12",
                                         "--precision", "exact", "--ignore-eos", "--json"};
  // Four processes over shared memory.
  std::vector<std::string> shm = args;
  for (const char* a : {"--ep", "4", "--ep-transport", "shm", "--ep-overlap", "on"}) shm.push_back(a);
  const auto r = run_cachalot(shm);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("output_ids"), golden.at("greedy_continuation"));
  // Two MPI processes (only rank 0 prints).
  std::string cmd = testing::mpirun_prefix(2) + testing::cachalot_binary();
  for (const std::string& a : args) cmd += " " + a;
  cmd += " --ep-transport mpi 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (fgets(buf, sizeof(buf), p) != nullptr) out += buf;
  ASSERT_EQ(pclose(p), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out).at("output_ids"), golden.at("greedy_continuation"));
  // Without mpirun, and serve over processes: refused with one line.
  std::vector<std::string> no_mpirun = args;
  no_mpirun.insert(no_mpirun.end(), {"--ep-transport", "mpi"});
  EXPECT_EQ(run_cachalot(no_mpirun).exit_code, 2);
}

TEST(ModelCli, InitWritesACheckpointThatGenerates) {
  testing::TempDir tmp;
  const std::string model = tmp.file("tiny");
  const auto init = run_cachalot({"init", "--preset", "tiny", "--out", model, "--seed", "5"});
  ASSERT_EQ(init.exit_code, 0) << init.err;
  EXPECT_TRUE(std::filesystem::exists(model + "/config.json"));
  EXPECT_TRUE(std::filesystem::exists(model + "/model.safetensors.index.json"));
  const std::vector<std::string> args{"generate", "--model", model, "--prompt-ids", "3,4,5", "--max-tokens", "6",
                                      "--temperature", "0.7", "--top-p", "0.9", "--seed", "11", "--ignore-eos", "--json"};
  const auto a = run_cachalot(args), b = run_cachalot(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(nlohmann::json::parse(a.out).at("output_ids").size(), 6u);
  EXPECT_EQ(a.out, b.out);  // seeded sampling is reproducible
  // The same seed writes the same weights.
  const std::string again = tmp.file("again");
  ASSERT_EQ(run_cachalot({"init", "--preset", "tiny", "--out", again, "--seed", "5"}).exit_code, 0);
  std::ifstream f1(model + "/model-00002-of-00004.safetensors", std::ios::binary),
      f2(again + "/model-00002-of-00004.safetensors", std::ios::binary);
  EXPECT_TRUE(std::equal(std::istreambuf_iterator<char>(f1), {}, std::istreambuf_iterator<char>(f2), {}));
}

TEST(ModelCli, BadInputFailsWithOneLine) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"generate", "--model", dir, "--prompt-ids", "1,5000"}, "outside the vocabulary"},
      {{"generate", "--model", dir, "--prompt-ids", "1", "--max-tokens", "5000"}, "context of 1024"},
      {{"generate", "--model", dir, "--prompt-ids", "1", "--top-p", "0"}, "top_p"},
      {{"generate", "--model", "/no/such/model", "--prompt-ids", "1"}, "config.json"},
      {{"init", "--preset", "huge", "--out", "x"}, "huge"},
  };
  for (const auto& [args, needle] : cases) {
    const auto r = run_cachalot(args);
    EXPECT_NE(r.exit_code, 0) << needle;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

}  // namespace
}  // namespace cachalot
