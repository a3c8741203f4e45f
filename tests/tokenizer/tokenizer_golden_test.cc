// The DeepSeek-V3 tokenizer against the fixture's reference encodings (HF tokenizers), and the
// round-trip and streaming properties on random text.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tests/support/test_support.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace cachalot::tokenizer {
namespace {

using nlohmann::json;

// Loading the 7.8 MB tokenizer.json once for the whole suite.
const Tokenizer* fixture_tokenizer() {
  static std::unique_ptr<Tokenizer> tok = [] {
    const std::string dir = ::cachalot::testing::fixture_path("tokenizer");
    return dir.empty() ? nullptr : std::make_unique<Tokenizer>(Tokenizer::load(dir));
  }();
  return tok.get();
}

json fixture_golden() {
  std::ifstream in(::cachalot::testing::fixture_path("tokenizer") + "/golden.json");
  return json::parse(in);
}

#define REQUIRE_TOKENIZER(var)                                          \
  CACHALOT_REQUIRE_FIXTURE(var##_dir, "tokenizer");                     \
  const Tokenizer& var = *fixture_tokenizer()

TEST(TokenizerGolden, EncodesEveryReferenceTextExactly) {
  REQUIRE_TOKENIZER(tok);
  const json golden = fixture_golden();
  ASSERT_FALSE(golden.at("encodings").empty());
  for (const json& e : golden.at("encodings")) {
    const std::string text = e.at("text");
    const auto expected = e.at("ids").get<std::vector<int32_t>>();
    EXPECT_EQ(tok.encode(text), expected) << "text: " << text;
    EXPECT_EQ(tok.decode(expected), e.at("decoded").get<std::string>()) << "text: " << text;
  }
}

TEST(TokenizerGolden, EncodesRenderedChatsExactly) {
  REQUIRE_TOKENIZER(tok);
  const json golden = fixture_golden();  // kept alive: a range-for over a temporary's member dangles
  for (const json& c : golden.at("chats")) {
    const std::string text = c.at("text");
    EXPECT_EQ(tok.encode(text), c.at("ids").get<std::vector<int32_t>>()) << text;
  }
}

TEST(TokenizerGolden, SpecialTokensAndConfig) {
  REQUIRE_TOKENIZER(tok);
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(tok.vocab_size(), 128815);
  EXPECT_TRUE(tok.is_special(1));
  EXPECT_FALSE(tok.is_special(19923));
  EXPECT_EQ(tok.piece(2058), "Ġworld");
  EXPECT_EQ(tok.token_bytes(2058), " world");
  EXPECT_EQ(tok.token_to_id("<｜User｜>"), 128803);
  EXPECT_FALSE(tok.chat_template().empty());
  // add_bos_token is true in DeepSeek's tokenizer_config.json; add_eos_token false.
  EXPECT_EQ(tok.encode("Hello world", true), (std::vector<int32_t>{0, 19923, 2058}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{0, 19923, 2058, 1}, /*skip_special_tokens=*/true), "Hello world");
}

TEST(TokenizerGolden, LongRunsAreLinearNotQuadratic) {
  REQUIRE_TOKENIZER(tok);
  // 200k bytes of one letter and of one CJK character: one pre-token each, merged by the heap.
  const std::string letters(200000, 'x');
  std::string hanzi;
  for (int i = 0; i < 50000; ++i) hanzi += "深";
  for (const std::string* text : std::vector<const std::string*>{&letters, &hanzi}) {
    const auto ids = tok.encode(*text);
    EXPECT_LT(ids.size(), text->size() / 2);
    EXPECT_EQ(tok.decode(ids), *text);
  }
}

TEST(TokenizerGolden, RefusesInvalidUtf8WithTheOffset) {
  REQUIRE_TOKENIZER(tok);
  try {
    tok.encode(std::string("ok \xC3\x28 bad"));
    FAIL() << "invalid UTF-8 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("offset 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tok.decode(std::vector<int32_t>{5, tok.vocab_size()}), Error);
  EXPECT_THROW(tok.decode(std::vector<int32_t>{-1}), Error);
}

// Random strings over code points from every UTF-8 length and the scripts the pre-tokenizer
// treats specially (digits, CJK, kana, punctuation, whitespace, emoji, combining marks).
std::string random_text(std::mt19937& rng, int length) {
  static const std::vector<std::pair<char32_t, char32_t>> ranges = {
      {0x20, 0x7E}, {0x09, 0x0D}, {0x30, 0x39}, {0xA0, 0x2FF}, {0x300, 0x36F}, {0x400, 0x4FF},
      {0x600, 0x6FF}, {0x900, 0x97F}, {0x2000, 0x206F}, {0x3040, 0x30FF}, {0x4E00, 0x9FA5},
      {0xAC00, 0xD7A3}, {0xE000, 0xE0FF}, {0xFF00, 0xFFEF}, {0x1F300, 0x1F6FF}, {0x10000, 0x10FFFF}};
  std::string out;
  for (int i = 0; i < length; ++i) {
    const auto& [lo, hi] = ranges[rng() % ranges.size()];
    char32_t cp = lo + rng() % (hi - lo + 1);
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
    utf8::append_code_point(out, cp);
  }
  return out;
}

TEST(TokenizerRoundTrip, RandomUnicodeDecodesToItself) {
  REQUIRE_TOKENIZER(tok);
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    const std::string text = random_text(rng, 1 + static_cast<int>(rng() % 80));
    ASSERT_EQ(tok.decode(tok.encode(text)), text) << "trial " << trial;
  }
}

TEST(TokenizerStreaming, NeverSplitsACodePointAndMatchesDecode) {
  REQUIRE_TOKENIZER(tok);
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    // Encodings of real text, and random ids (which cut characters anywhere).
    std::vector<int32_t> ids = tok.encode(random_text(rng, 40));
    if (trial % 2) {
      for (auto& id : ids) {
        id = static_cast<int32_t>(rng() % 128000);
      }
    }
    StreamDecoder stream(tok, /*skip_special_tokens=*/false);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string delta = stream.push(id);
      ASSERT_EQ(utf8::find_invalid(delta), std::string::npos) << "a delta split a character";
      streamed += delta;
    }
    const std::string rest = stream.finish();
    ASSERT_EQ(utf8::find_invalid(rest), std::string::npos);
    streamed += rest;
    ASSERT_EQ(streamed, tok.decode(ids)) << "trial " << trial;
  }
}

TEST(TokenizerStreaming, IdsPastTheVocabularyLeaveNoText) {
  REQUIRE_TOKENIZER(tok);
  // DeepSeek-V3's embedding has 129280 rows for 128815 tokens: a model can emit the others.
  StreamDecoder stream(tok);
  EXPECT_EQ(stream.push(19923), "Hello");
  EXPECT_EQ(stream.push(129000), "");
  EXPECT_EQ(stream.push(-3), "");
  EXPECT_EQ(stream.push(2058), " world");
  EXPECT_FALSE(tok.known(129000));
  EXPECT_TRUE(tok.known(128814));
}

TEST(TokenizerStreaming, HoldsBackAPartialCharacter) {
  REQUIRE_TOKENIZER(tok);
  // "🐳" is four bytes; byte-level tokens for its bytes one by one.
  const std::string whale = "🐳";
  StreamDecoder stream(tok);
  std::string out;
  for (std::size_t i = 0; i < whale.size(); ++i) {
    const std::string byte_text = whale.substr(i, 1);
    std::vector<int32_t> byte_ids;
    for (int32_t id = 0; id < 128000 && byte_ids.empty(); ++id) {
      if (tok.token_bytes(id) == byte_text) byte_ids.push_back(id);
    }
    ASSERT_EQ(byte_ids.size(), 1u);
    const std::string delta = stream.push(byte_ids[0]);
    if (i + 1 < whale.size()) {
      EXPECT_EQ(delta, "") << "emitted part of a character after byte " << i;
    }
    out += delta;
  }
  EXPECT_EQ(out, whale);
  EXPECT_EQ(stream.finish(), "");
}

TEST(TokenizerLoad, MissingAndCorruptFilesAreClearErrors) {
  ::cachalot::testing::TempDir dir;
  try {
    Tokenizer::load(dir.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos);
  }
  EXPECT_THROW(Tokenizer::from_json_text("{not json", ""), Error);
  // A merge naming a token that is not in the vocabulary.
  const char* bad_merge = R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})";
  try {
    Tokenizer::from_json_text(bad_merge, "");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruptData) << e.what();
  }
  const char* unigram = R"({"model": {"type": "Unigram", "vocab": []}})";
  try {
    Tokenizer::from_json_text(unigram, "");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("Unigram"), std::string::npos);
  }
}

}  // namespace
}  // namespace cachalot::tokenizer
