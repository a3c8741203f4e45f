#include <gtest/gtest.h>

#include "engine/text_output.h"
#include "tests/support/test_support.h"

namespace cachalot::engine {
namespace {

TEST(TextOutput, StopStringsNeverReachTheClientEvenAcrossTokens) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tokenizer");
  const auto tok = tokenizer::Tokenizer::load(dir);
  const auto ids = tok.encode("Hello world. Bye now");
  auto run = [&](std::vector<std::string> stop, bool* stopped) {
    TextOutput out(&tok, std::move(stop));
    std::string text;
    for (int32_t id : ids) {
      text += out.push(id);
      if (out.stopped()) break;
    }
    *stopped = out.stopped();
    return text + out.finish();
  };
  bool stopped = false;
  EXPECT_EQ(run({"d. B"}, &stopped), "Hello worl");  // spans the tokens " world", ".", " Bye"
  EXPECT_TRUE(stopped);
  EXPECT_EQ(run({"zzz", "now"}, &stopped), "Hello world. Bye ");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(run({"worlds"}, &stopped), "Hello world. Bye now");  // a held-back prefix is released
  EXPECT_FALSE(stopped);
  EXPECT_EQ(run({}, &stopped), "Hello world. Bye now");
}

}  // namespace
}  // namespace cachalot::engine
