#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace cachalot::tokenizer::byte_level {
namespace {

struct Tables {
  std::array<char32_t, 256> to_code_point{};
  std::array<int, 0x144> to_byte{};  // code points below 0x144, -1 where none maps

  Tables() {
    to_byte.fill(-1);
    // Bytes that are printable keep their own code point ('!'..'~', '¡'..'¬', '®'..'ÿ'); the
    // rest take U+0100 + n in byte order.
    auto keeps_itself = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const char32_t cp = keeps_itself(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(0x100 + next++);
      to_code_point[b] = cp;
      to_byte[cp] = b;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t byte_to_code_point(unsigned char b) { return tables().to_code_point[b]; }

std::string encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) utf8::append_code_point(out, tables().to_code_point[b]);
  return out;
}

std::optional<std::string> decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t len = utf8::sequence_length(text, pos);
    if (len == 0 || len > 2) return std::nullopt;  // the alphabet lies below U+0800
    const char32_t cp = utf8::decode_code_point(text, pos, len);
    if (cp >= tables().to_byte.size() || tables().to_byte[cp] < 0) return std::nullopt;
    out.push_back(static_cast<char>(tables().to_byte[cp]));
    pos += len;
  }
  return out;
}

}  // namespace cachalot::tokenizer::byte_level
