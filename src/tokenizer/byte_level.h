// GPT-2's byte-level alphabet: every byte maps to one printable code point (printable ASCII and
// Latin-1 map to themselves, the other 68 bytes to U+0100..U+0143), so byte-level BPE vocabularies
// are written as ordinary Unicode strings ("Ġworld" is " world").
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace cachalot::tokenizer::byte_level {

// The code point byte b is written as.
char32_t byte_to_code_point(unsigned char b);

// The UTF-8 text of a byte string in the byte-level alphabet.
std::string encode(std::string_view bytes);

// The bytes a byte-level string stands for, or nullopt if it holds a character outside the
// alphabet (added tokens such as "<｜User｜>" are not byte-level strings) or is not UTF-8.
std::optional<std::string> decode(std::string_view byte_level_text);

}  // namespace cachalot::tokenizer::byte_level
