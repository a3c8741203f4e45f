// A compiled Unicode regular expression (PCRE2 in UTF + UCP mode, JIT-compiled when the
// platform allows): \p{L}, \p{N}, \s and friends follow the Unicode properties of the PCRE2 build
// from Debian, which is what the tokenizer's Split patterns need.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace cachalot::tokenizer {

class Regex {
 public:
  // Throws Error(kInvalidArgument) naming the pattern and PCRE2's message if it does not compile.
  // literal: the pattern is a plain string, not a regex.
  explicit Regex(std::string_view pattern, bool literal = false);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // Calls on_match(begin, end) for every non-overlapping match in subject, left to right (empty
  // matches are skipped, as the HF tokenizers' Split does). The subject must be valid UTF-8.
  void for_each_match(std::string_view subject, const std::function<void(std::size_t, std::size_t)>& on_match) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cachalot::tokenizer
