#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace cachalot::tokenizer {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

// Match data sized for one capture group, one per thread and reused: allocating it per call
// costs more than a short match.
struct MatchData {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  ~MatchData() { pcre2_match_data_free(data); }
};

}  // namespace

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() { pcre2_code_free(code); }
};

Regex::Regex(std::string_view pattern, bool literal) : pattern_(pattern), impl_(std::make_unique<Impl>()) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  const uint32_t options = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error_code,
                              &error_offset, nullptr);
  if (impl_->code == nullptr) {
    raise(ErrorKind::kInvalidArgument, "regex '{}' does not compile at offset {}: {}", pattern, error_offset,
          pcre2_message(error_code));
  }
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

void Regex::for_each_match(std::string_view subject,
                           const std::function<void(std::size_t, std::size_t)>& on_match) const {
  thread_local MatchData match;
  const auto* text = reinterpret_cast<PCRE2_SPTR>(subject.data());
  std::size_t start = 0;
  while (start <= subject.size()) {
    // The caller validated the UTF-8 once for the whole text; checking again per call would be
    // quadratic over the pieces.
    const int rc = impl_->jit ? pcre2_jit_match(impl_->code, text, subject.size(), start, PCRE2_NO_UTF_CHECK,
                                                match.data, nullptr)
                              : pcre2_match(impl_->code, text, subject.size(), start, PCRE2_NO_UTF_CHECK,
                                            match.data, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return;
    if (rc < 0) raise(ErrorKind::kInternal, "regex '{}' failed: {}", pattern_, pcre2_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.data);
    const std::size_t begin = ovector[0], end = ovector[1];
    if (end > begin) {
      on_match(begin, end);
      start = end;
    } else {
      // Empty match: step over one whole code point so the next search starts on a boundary.
      if (begin >= subject.size()) return;
      std::size_t step = 1;
      while (begin + step < subject.size() && (static_cast<unsigned char>(subject[begin + step]) & 0xC0) == 0x80) ++step;
      start = begin + step;
    }
  }
}

}  // namespace cachalot::tokenizer
