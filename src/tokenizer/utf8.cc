#include "tokenizer/utf8.h"

namespace cachalot::tokenizer::utf8 {
namespace {

// Unicode Table 3-7 (well-formed byte sequences): the allowed range of the second byte depends
// on the first; later bytes are 80..BF.
struct LeadInfo {
  std::size_t length;
  unsigned char second_lo, second_hi;
};

LeadInfo lead_info(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b >= 0xE1 && b <= 0xEC) return {3, 0x80, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b >= 0xEE && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

}  // namespace

std::size_t sequence_length(std::string_view text, std::size_t pos, std::size_t* valid_prefix) {
  if (valid_prefix) *valid_prefix = 0;
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const LeadInfo lead = lead_info(byte(pos));
  if (lead.length == 0) return 0;
  if (lead.length == 1) return 1;
  std::size_t have = 1;
  for (; have < lead.length; ++have) {
    if (pos + have >= text.size()) break;
    const unsigned char b = byte(pos + have);
    const unsigned char lo = have == 1 ? lead.second_lo : 0x80;
    const unsigned char hi = have == 1 ? lead.second_hi : 0xBF;
    if (b < lo || b > hi) break;
  }
  if (have == lead.length) return have;
  if (valid_prefix) *valid_prefix = have;
  return 0;
}

std::size_t find_invalid(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t len = sequence_length(text, pos);
    if (len == 0) return pos;
    pos += len;
  }
  return std::string_view::npos;
}

std::string to_valid_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::size_t prefix = 0;
    const std::size_t len = sequence_length(bytes, pos, &prefix);
    if (len > 0) {
      out.append(bytes.substr(pos, len));
      pos += len;
    } else {
      // A maximal subpart: the valid prefix of a sequence (or one bad byte) becomes one U+FFFD.
      out.append(kReplacement);
      pos += prefix > 0 ? prefix : 1;
    }
  }
  return out;
}

std::size_t incomplete_suffix_length(std::string_view bytes) {
  // A truncated sequence is at most 3 bytes long, so its lead byte is among the last three.
  const std::size_t n = bytes.size();
  for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
    const std::size_t pos = n - back;
    const auto b = static_cast<unsigned char>(bytes[pos]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    std::size_t prefix = 0;
    const std::size_t len = sequence_length(bytes, pos, &prefix);
    return len == 0 && prefix == back ? back : 0;
  }
  return 0;
}

void append_code_point(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

char32_t decode_code_point(std::string_view text, std::size_t pos, std::size_t len) {
  auto byte = [&](std::size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(text[pos + i])); };
  switch (len) {
    case 1: return byte(0);
    case 2: return ((byte(0) & 0x1F) << 6) | (byte(1) & 0x3F);
    case 3: return ((byte(0) & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F);
    default:
      return ((byte(0) & 0x07) << 18) | ((byte(1) & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) | (byte(3) & 0x3F);
  }
}

}  // namespace cachalot::tokenizer::utf8
