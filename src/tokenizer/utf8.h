// UTF-8 helpers the tokenizer needs: validation (encode refuses ill-formed input), lossy
// conversion (decode turns byte sequences that are not UTF-8 into U+FFFD the way Rust's
// String::from_utf8_lossy does, one replacement per maximal invalid subpart), and the length of
// the prefix that ends on a code point boundary (the streaming decoder holds back the rest).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cachalot::tokenizer::utf8 {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed sequence starting at text[pos] (1-4), or 0 if the bytes there are
// not a complete well-formed sequence. `*valid_prefix` (optional) receives how many bytes form
// a valid but possibly truncated prefix of a sequence (1-3), for the streaming decoder.
std::size_t sequence_length(std::string_view text, std::size_t pos, std::size_t* valid_prefix = nullptr);

// Offset of the first byte that is not part of well-formed UTF-8, or npos if all of it is.
std::size_t find_invalid(std::string_view text);

// text with every maximal invalid subpart replaced by U+FFFD.
std::string to_valid_lossy(std::string_view bytes);

// Bytes at the end of `bytes` that are a valid but incomplete sequence (0-3): more bytes may
// complete them, so a streaming decoder must not emit them yet.
std::size_t incomplete_suffix_length(std::string_view bytes);

// Encodes one code point (<= 0x10FFFF, not a surrogate) and appends it.
void append_code_point(std::string& out, char32_t code_point);

// Decodes the code point of a well-formed sequence at text[pos] of length len.
char32_t decode_code_point(std::string_view text, std::size_t pos, std::size_t len);

}  // namespace cachalot::tokenizer::utf8
