#include <gtest/gtest.h>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace cachalot::tokenizer {
namespace {

TEST(Utf8, FindsTheFirstInvalidByte) {
  EXPECT_EQ(utf8::find_invalid("plain ascii"), std::string_view::npos);
  EXPECT_EQ(utf8::find_invalid("深度 🐳"), std::string_view::npos);
  EXPECT_EQ(utf8::find_invalid("ab\xFF"), 2u);
  EXPECT_EQ(utf8::find_invalid("\xC0\xAF"), 0u);          // overlong
  EXPECT_EQ(utf8::find_invalid("x\xED\xA0\x80"), 1u);     // surrogate
  EXPECT_EQ(utf8::find_invalid("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(utf8::find_invalid("\xE6\xB7"), 0u);          // truncated
}

TEST(Utf8, LossyReplacesEachMaximalSubpartOnce) {
  // As Rust's from_utf8_lossy / the WHATWG decoder: a truncated 3-byte prefix is one U+FFFD.
  EXPECT_EQ(utf8::to_valid_lossy("a\xE6\xB7" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(utf8::to_valid_lossy("\xFF\xFE"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8::to_valid_lossy("\xF0\x9F\x90"), "\xEF\xBF\xBD");
  EXPECT_EQ(utf8::to_valid_lossy("ok"), "ok");
}

TEST(Utf8, IncompleteSuffix) {
  EXPECT_EQ(utf8::incomplete_suffix_length("abc"), 0u);
  EXPECT_EQ(utf8::incomplete_suffix_length("a\xF0\x9F\x90"), 3u);
  EXPECT_EQ(utf8::incomplete_suffix_length("a\xF0\x9F"), 2u);
  EXPECT_EQ(utf8::incomplete_suffix_length("a\xE6"), 1u);
  EXPECT_EQ(utf8::incomplete_suffix_length("a\xF0\x9F\x90\xB3"), 0u);  // complete
  EXPECT_EQ(utf8::incomplete_suffix_length("a\x80"), 0u);              // never completable
  EXPECT_EQ(utf8::incomplete_suffix_length("a\xE0\x80"), 0u);          // bad second byte
}

TEST(ByteLevel, MapsEveryByteAndBack) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const std::string text = byte_level::encode(all);
  EXPECT_EQ(byte_level::decode(text), all);
  EXPECT_EQ(byte_level::encode(" "), "Ġ");
  EXPECT_EQ(byte_level::encode("\n"), "Ċ");
  EXPECT_FALSE(byte_level::decode("<｜User｜>").has_value());
}

}  // namespace
}  // namespace cachalot::tokenizer
