#include "tokenizer/jinja_lexer.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace cachalot::tokenizer::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(source) {}

  std::vector<Token> run() {
    std::size_t text_start = 0;
    bool strip_next_text = false;  // the previous tag ended with "-"
    bool trim_newline = false;     // the previous tag was a block or comment (trim_blocks)
    while (pos_ <= src_.size()) {
      const std::size_t open = find_tag(pos_);
      std::string text(src_.substr(text_start, open - text_start));
      if (strip_next_text) {
        std::size_t i = 0;
        while (i < text.size() && is_space(text[i])) ++i;
        text.erase(0, i);
      } else if (trim_newline) {
        if (text.starts_with("\r\n")) text.erase(0, 2);
        else if (text.starts_with("\n")) text.erase(0, 1);
      }
      if (open == src_.size()) {
        emit_text(std::move(text));
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      const bool minus = open + 2 < src_.size() && src_[open + 2] == '-';
      const bool plus = open + 2 < src_.size() && src_[open + 2] == '+';
      if (minus) {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (kind != '{' && !plus) {
        // lstrip_blocks: spaces and tabs between the start of the line and a block tag go.
        std::size_t j = open;
        while (j > 0 && (src_[j - 1] == ' ' || src_[j - 1] == '\t')) --j;
        if (j == 0 || src_[j - 1] == '\n') text.erase(text.size() - std::min(open - j, text.size()));
      }
      emit_text(std::move(text));
      line_ += count_lines(text_start, open);
      pos_ = open + 2 + ((minus || plus) ? 1 : 0);
      if (kind == '#') {
        const std::size_t close = src_.find("#}", pos_);
        if (close == std::string_view::npos) fail("unterminated comment");
        strip_next_text = close > pos_ && src_[close - 1] == '-';
        trim_newline = !strip_next_text;
        line_ += count_lines(pos_, close);
        pos_ = close + 2;
      } else {
        tokens_.push_back({kind == '{' ? TokenType::kExprOpen : TokenType::kStmtOpen, "", line_});
        strip_next_text = lex_tag(kind == '{' ? '}' : '%');
        trim_newline = kind == '%' && !strip_next_text;
      }
      text_start = pos_;
    }
    tokens_.push_back({TokenType::kEnd, "", line_});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(std::string_view what) const {
    raise(ErrorKind::kInvalidArgument, "chat template: line {}: {}", line_, what);
  }

  int count_lines(std::size_t from, std::size_t to) const {
    int n = 0;
    for (std::size_t i = from; i < to && i < src_.size(); ++i) n += src_[i] == '\n';
    return n;
  }

  std::size_t find_tag(std::size_t from) const {
    for (std::size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return src_.size();
  }

  void emit_text(std::string text) {
    if (!text.empty()) tokens_.push_back({TokenType::kText, std::move(text), line_});
  }

  // Lexes expression tokens up to the closing "}}" or "%}"; returns whether it was "-}}"/"-%}".
  bool lex_tag(char close_char) {
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) line_ += src_[pos_++] == '\n';
      if (pos_ >= src_.size()) fail("unterminated tag");
      const std::string_view rest = src_.substr(pos_);
      const bool minus_close = rest.size() >= 3 && rest[0] == '-' && rest[1] == close_char && rest[2] == '}';
      if (minus_close || (rest.size() >= 2 && rest[0] == close_char && rest[1] == '}')) {
        tokens_.push_back({close_char == '}' ? TokenType::kExprClose : TokenType::kStmtClose, "", line_});
        pos_ += minus_close ? 3 : 2;
        return minus_close;
      }
      const char c = rest[0];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        std::size_t n = 1;
        while (n < rest.size() && (std::isalnum(static_cast<unsigned char>(rest[n])) || rest[n] == '_')) ++n;
        push(TokenType::kName, std::string(rest.substr(0, n)), n);
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number(rest);
      } else if (c == '\'' || c == '"') {
        lex_string(rest);
      } else {
        static constexpr std::string_view two[] = {"**", "//", "==", "!=", "<=", ">="};
        bool matched = false;
        for (std::string_view op : two) {
          if (rest.starts_with(op)) {
            push(TokenType::kOperator, std::string(op), 2);
            matched = true;
            break;
          }
        }
        if (!matched) {
          if (std::string_view("+-*/%~<>=()[]{}.,:|").find(c) == std::string_view::npos) {
            fail(fmt::format("unexpected character '{}' in a tag", c));
          }
          push(TokenType::kOperator, std::string(1, c), 1);
        }
      }
    }
  }

  void push(TokenType type, std::string text, std::size_t consumed) {
    tokens_.push_back({type, std::move(text), line_});
    pos_ += consumed;
  }

  void lex_number(std::string_view rest) {
    std::size_t n = 0;
    while (n < rest.size() && (std::isdigit(static_cast<unsigned char>(rest[n])) || rest[n] == '_')) ++n;
    bool is_float = false;
    if (n + 1 < rest.size() && rest[n] == '.' && std::isdigit(static_cast<unsigned char>(rest[n + 1]))) {
      is_float = true;
      ++n;
      while (n < rest.size() && std::isdigit(static_cast<unsigned char>(rest[n]))) ++n;
    }
    if (n < rest.size() && (rest[n] == 'e' || rest[n] == 'E')) {
      std::size_t m = n + 1;
      if (m < rest.size() && (rest[m] == '+' || rest[m] == '-')) ++m;
      if (m < rest.size() && std::isdigit(static_cast<unsigned char>(rest[m]))) {
        is_float = true;
        n = m;
        while (n < rest.size() && std::isdigit(static_cast<unsigned char>(rest[n]))) ++n;
      }
    }
    std::string text;
    for (char ch : rest.substr(0, n))
      if (ch != '_') text += ch;
    push(is_float ? TokenType::kFloat : TokenType::kInteger, std::move(text), n);
  }

  void lex_string(std::string_view rest) {
    const char quote = rest[0];
    std::string value;
    std::size_t i = 1;
    for (; i < rest.size() && rest[i] != quote; ++i) {
      if (rest[i] != '\\' || i + 1 >= rest.size()) {
        line_ += rest[i] == '\n';
        value += rest[i];
        continue;
      }
      const char e = rest[++i];
      switch (e) {
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case 'f': value += '\f'; break;
        case 'v': value += '\v'; break;
        case 'b': value += '\b'; break;
        case '0': value += '\0'; break;
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case 'u':
        case 'x': {
          const std::size_t digits = e == 'u' ? 4 : 2;
          if (i + digits >= rest.size()) fail("truncated escape in a string");
          char32_t cp = 0;
          for (char h : rest.substr(i + 1, digits)) {
            if (!std::isxdigit(static_cast<unsigned char>(h))) fail("bad \\u or \\x escape in a string");
            cp = cp * 16 + static_cast<char32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (h | 0x20) - 'a' + 10);
          }
          if (cp >= 0xD800 && cp <= 0xDFFF) fail("a surrogate escape in a string");
          utf8::append_code_point(value, cp);
          i += digits;
          break;
        }
        default: value += '\\'; value += e;  // Python keeps unknown escapes as written
      }
    }
    if (i >= rest.size()) fail("unterminated string literal");
    push(TokenType::kString, std::move(value), i + 1);
  }

  std::string_view src_;
  std::size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(std::string_view source) { return Lexer(source).run(); }

}  // namespace cachalot::tokenizer::jinja
