// Text in and out from the command line: `cachalot tokenize`, `init --tokenizer`, `generate
// --prompt` and `generate --chat` with the DeepSeek-V3 tokenizer from the fixtures.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/support/test_support.h"

namespace cachalot {
namespace {

using testing::run_cachalot;

TEST(TokenizerCli, TokenizePrintsTheReferenceIdsAndPieces) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tokenizer");
  const auto r = run_cachalot({"tokenize", "--model", dir, "--json", "Hello, world! How are you today?"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out.at("ids"), nlohmann::json({19923, 14, 2058, 3, 1730, 477, 440, 4316, 33}));
  EXPECT_EQ(out.at("pieces")[2], "Ġworld");
  // From standard input, with BOS; and the table form.
  const auto s = run_cachalot({"tokenize", "--model", dir, "--json", "--add-special-tokens"}, "Hello world");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(nlohmann::json::parse(s.out).at("ids"), nlohmann::json({0, 19923, 2058}));
  const auto t = run_cachalot({"tokenize", "--model", dir, "深度求索"});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_NE(t.out.find("tokens, 12 bytes"), std::string::npos) << t.out;
}

class TokenizerModelCli : public ::testing::Test {
 protected:
  void SetUp() override {
    tokenizer_dir_ = testing::fixture_path("tokenizer");
    if (tokenizer_dir_.empty()) GTEST_SKIP() << "fixture tokenizer not found under " << testing::fixtures_dir();
    model_ = tmp_.file("tiny");
    const auto init = run_cachalot({"init", "--preset", "tiny", "--out", model_, "--seed", "3", "--tokenizer", tokenizer_dir_});
    ASSERT_EQ(init.exit_code, 0) << init.err;
  }
  testing::TempDir tmp_;
  std::string tokenizer_dir_, model_;
};

TEST_F(TokenizerModelCli, InitCopiesTheTokenizerAndWidensTheVocabulary) {
  EXPECT_TRUE(std::filesystem::exists(model_ + "/tokenizer.json"));
  EXPECT_TRUE(std::filesystem::exists(model_ + "/tokenizer_config.json"));
  std::ifstream in(model_ + "/config.json");
  EXPECT_EQ(nlohmann::json::parse(in).at("vocab_size"), 128896);  // 128815 tokens padded to 128
}

TEST_F(TokenizerModelCli, GenerateFromTextReturnsText) {
  const auto r = run_cachalot({"generate", "--model", model_, "--prompt", "Hello world", "--max-tokens", "5",
                               "--temperature", "0.9", "--seed", "1", "--ignore-eos", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto out = nlohmann::json::parse(r.out);  // throws on invalid UTF-8
  EXPECT_EQ(out.at("prompt_ids"), nlohmann::json({0, 19923, 2058}));  // BOS as tokenizer_config asks
  EXPECT_EQ(out.at("output_ids").size(), 5u);
  EXPECT_TRUE(out.at("text").is_string());
  // Plain mode streams the text to stdout.
  const auto plain = run_cachalot({"generate", "--model", model_, "--prompt", "Hi", "--max-tokens", "4", "--ignore-eos"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_NE(plain.err.find("decoded 4 tokens"), std::string::npos) << plain.err;
}

TEST_F(TokenizerModelCli, ChatAnswersEachLineAndSurvivesAnOversizedTurn) {
  std::string huge;
  for (int i = 0; i < 5000; ++i) huge += "word ";  // past the tiny preset's 1024-token context
  const auto r = run_cachalot({"generate", "--model", model_, "--chat", "--system", "Be brief.", "--max-tokens", "3",
                               "--ignore-eos"},
                              "Hello\n" + huge + "\n/reset\nAgain\n/exit\nnever read\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Two replies (one line each); the oversized turn is an error on stderr, not the end.
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;
  EXPECT_NE(r.err.find("exceeds the model's context"), std::string::npos) << r.err;
}

TEST(TokenizerCli, BadInputFailsWithOneLine) {
  CACHALOT_REQUIRE_FIXTURE(tok, "tokenizer");
  CACHALOT_REQUIRE_FIXTURE(model, "tiny-dsv3");
  const auto invalid = run_cachalot({"tokenize", "--model", tok}, "bad \xFF byte");
  EXPECT_EQ(invalid.exit_code, 2);
  EXPECT_NE(invalid.err.find("not valid UTF-8 (byte 0xFF at offset 4)"), std::string::npos) << invalid.err;
  const auto no_tokenizer = run_cachalot({"generate", "--model", model, "--prompt", "hi"});
  EXPECT_NE(no_tokenizer.exit_code, 0);
  EXPECT_NE(no_tokenizer.err.find("has no tokenizer.json"), std::string::npos) << no_tokenizer.err;
  const auto both = run_cachalot({"generate", "--model", model, "--prompt", "hi", "--prompt-ids", "1"});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.err.find("exactly one of"), std::string::npos) << both.err;
  const auto missing = run_cachalot({"tokenize", "--model", "/no/such/dir", "x"});
  EXPECT_NE(missing.err.find("tokenizer.json not found"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace cachalot
