// The cachalot binary end to end: exit codes, one-line errors, machine-readable output.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/file_io.h"
#include "tests/support/test_support.h"

namespace cachalot {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::run_cachalot;

int count_lines(const std::string& text) {
  int n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

TEST(Cli, HelpListsTheCommands) {
  const auto r = run_cachalot({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* cmd : {"version", "inspect", "bench"}) EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd;
}

TEST(Cli, VersionPrintsJson) {
  const auto r = run_cachalot({"version", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json v = json::parse(r.out);
  EXPECT_FALSE(v["version"].get<std::string>().empty());
  EXPECT_TRUE(v["isa"] == "avx512" || v["isa"] == "portable");
  EXPECT_GE(v["threads"].get<int>(), 1);
}

TEST(Cli, PortableIsaCanBeForcedAndUnknownIsaIsAnError) {
  setenv("CACHALOT_ISA", "portable", 1);
  const auto r = run_cachalot({"version", "--json"});
  setenv("CACHALOT_ISA", "nonsense", 1);
  const auto bad = run_cachalot({"version", "--json"});
  unsetenv("CACHALOT_ISA");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["isa"], "portable");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("unknown ISA 'nonsense'"), std::string::npos) << bad.err;
}

TEST(Cli, BadUsageFailsWithOneLine) {
  for (const auto& args : std::vector<std::vector<std::string>>{{}, {"frobnicate"}, {"inspect"}, {"bench", "nope"}}) {
    const auto r = run_cachalot(args);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_EQ(r.err.rfind("cachalot: error: ", 0), 0u) << r.err;
  }
}

TEST(Cli, InspectListsEveryTensorOfTheFixture) {
  CACHALOT_REQUIRE_FIXTURE(fixture, "tiny-dsv3");
  const auto r = run_cachalot({"inspect", fixture, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json out = json::parse(r.out);
  const json index = json::parse(read_text_file(fixture + "/model.safetensors.index.json"));
  ASSERT_EQ(out["tensors"].size(), index["weight_map"].size());
  for (const auto& t : out["tensors"]) {
    EXPECT_EQ(t["shard"], index["weight_map"][t["name"].get<std::string>()]);
    EXPECT_GT(t["bytes"].get<uint64_t>(), 0u);
  }
  EXPECT_EQ(out["config"]["hidden_size"], 256);

  const auto text = run_cachalot({"inspect", fixture});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("model.layers.1.mlp.experts.15.down_proj.weight_scale_inv"), std::string::npos);
  EXPECT_NE(text.out.find("n_routed_experts"), std::string::npos);
}

TEST(Cli, InspectOfATruncatedShardNamesTheFile) {
  CACHALOT_REQUIRE_FIXTURE(fixture, "tiny-dsv3");
  testing::TempDir dir;
  testing::copy_folder(fixture, dir);
  const std::string shard = dir.file("model-00002-of-00002.safetensors");
  fs::resize_file(shard, fs::file_size(shard) / 2);
  const auto r = run_cachalot({"inspect", dir.path()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("model-00002-of-00002.safetensors: truncated"), std::string::npos) << r.err;

  const auto missing = run_cachalot({"inspect", dir.file("no-such-folder")});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("does not exist"), std::string::npos) << missing.err;
}

TEST(Cli, BenchPrintsOneJsonObjectPerCaseWithPeerAndRatio) {
  testing::TempDir dir;
  const auto r = run_cachalot({"--trace", dir.file("bench.trace.json"), "bench", "convert", "--quick", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    const json row = json::parse(line);
    for (const char* key : {"bench", "case", "metric", "value", "unit", "peer", "peer_value", "ratio"})
      EXPECT_TRUE(row.contains(key)) << key << " missing in " << line;
    EXPECT_GT(row["value"].get<double>(), 0);
    EXPECT_GT(row["peer_value"].get<double>(), 0);
    EXPECT_NEAR(row["ratio"].get<double>(), row["value"].get<double>() / row["peer_value"].get<double>(), 1e-9);
    ++n;
  }
  EXPECT_GE(n, 5);
  // --trace wrote a Chrome trace with a span per benchmark case.
  const json trace = json::parse(read_text_file(dir.file("bench.trace.json")));
  int spans = 0;
  for (const auto& e : trace["traceEvents"]) spans += e["ph"] == "X";
  EXPECT_GE(spans, 5);
}

TEST(Cli, EplbPrintsThePlacementAndBalancedness) {
  testing::TempDir dir;
  write_text_file(dir.file("loads.json"),
                  "[[90,132,40,61,104,165,39,4,73,56,183,86],[20,107,104,64,19,197,187,157,172,86,16,27]]");
  const auto r = run_cachalot({"eplb", "--loads", dir.file("loads.json"), "--replicas", "16", "--groups", "4", "--nodes",
                               "2", "--gpus", "8", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json p = json::parse(r.out);
  EXPECT_EQ(p["policy"], "hierarchical");
  EXPECT_EQ(p["phy2log"][0], json::parse("[5,6,5,7,8,4,3,4,10,9,10,2,0,1,11,1]"));
  EXPECT_EQ(p["log2phy"][0][5], json::parse("[0,2]"));
  EXPECT_GT(p["balancedness"]["after"].get<double>(), 0.5);
  const auto table = run_cachalot({"eplb", "--loads", dir.file("loads.json"), "--replicas", "16", "--gpus", "4"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("global policy"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("before (no replication)"), std::string::npos) << table.out;
  // Bad input: one line naming the problem.
  write_text_file(dir.file("ragged.json"), "[[1,2],[3]]");
  const auto bad = run_cachalot({"eplb", "--loads", dir.file("ragged.json"), "--replicas", "4", "--gpus", "2"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_EQ(count_lines(bad.err), 1) << bad.err;
  EXPECT_NE(bad.err.find("layer 1 has 1 experts"), std::string::npos) << bad.err;
  const auto uneven = run_cachalot({"eplb", "--loads", dir.file("loads.json"), "--replicas", "16", "--gpus", "5"});
  EXPECT_NE(uneven.err.find("16 replicas do not split evenly over 5 GPUs"), std::string::npos) << uneven.err;
}

}  // namespace
}  // namespace cachalot
