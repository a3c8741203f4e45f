// Jinja lexing: template text becomes a flat list of tokens (text runs, tag delimiters and the
// expression tokens inside tags), with Jinja's whitespace control applied here: "-" on a tag
// strips whitespace beside it; trim_blocks and lstrip_blocks are on, as Hugging Face's
// apply_chat_template configures its Jinja environment.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cachalot::tokenizer::jinja {

enum class TokenType {
  kText,        // literal template text
  kExprOpen,    // {{
  kExprClose,   // }}
  kStmtOpen,    // {%
  kStmtClose,   // %}
  kName,        // identifiers and keywords (if, for, and, not, true, none, ...)
  kString,      // a string literal, unescaped
  kInteger,
  kFloat,
  kOperator,    // + - * / // % ** ~ == != < > <= >= = ( ) [ ] { } . , : |
  kEnd,
};

struct Token {
  TokenType type;
  std::string text;
  int line;
};

// Throws Error(kInvalidArgument) with the line for an unterminated tag or string.
std::vector<Token> lex(std::string_view source);

}  // namespace cachalot::tokenizer::jinja
