#include <algorithm>
#include <set>

#include "core/error.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_lexer.h"

namespace cachalot::tokenizer::jinja {
namespace {

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body parse_template() {
    std::string end;
    Body body = parse_body({}, end);
    if (!end.empty()) fail(fmt::format("'{{% {} %}}' without an opening tag", end));
    return body;
  }

 private:
  const Token& peek(std::size_t ahead = 0) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  const Token& next() { return tokens_[pos_ < tokens_.size() - 1 ? pos_++ : pos_]; }
  bool at_op(std::string_view op) const { return peek().type == TokenType::kOperator && peek().text == op; }
  bool at_name(std::string_view name) const { return peek().type == TokenType::kName && peek().text == name; }

  [[noreturn]] void fail(std::string_view what) const {
    raise(ErrorKind::kInvalidArgument, "chat template: line {}: {}", peek().line, what);
  }
  [[noreturn]] void unsupported(std::string_view what) const {
    raise(ErrorKind::kUnsupported, "chat template: line {}: {} is not supported by cachalot's Jinja subset",
          peek().line, what);
  }

  void expect_op(std::string_view op) {
    if (!at_op(op)) fail(fmt::format("expected '{}', found '{}'", op, describe(peek())));
    next();
  }
  void expect(TokenType type, std::string_view what) {
    if (peek().type != type) fail(fmt::format("expected {}, found '{}'", what, describe(peek())));
    next();
  }
  std::string expect_name() {
    if (peek().type != TokenType::kName) fail(fmt::format("expected a name, found '{}'", describe(peek())));
    return next().text;
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case TokenType::kExprClose: return "}}";
      case TokenType::kStmtClose: return "%}";
      case TokenType::kEnd: return "end of template";
      default: return t.text;
    }
  }

  ExprPtr make(Expr::Kind kind, int line, std::string name = {}) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    e->name = std::move(name);
    return e;
  }

  // Statements until one of `ends` opens a tag; `end` receives it ("" at the end of input).
  Body parse_body(const std::set<std::string>& ends, std::string& end) {
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.type == TokenType::kEnd) {
        end.clear();
        return body;
      }
      if (t.type == TokenType::kText) {
        auto node = std::make_unique<Node>();
        node->kind = Node::Kind::kText;
        node->line = t.line;
        node->text = next().text;
        body.push_back(std::move(node));
      } else if (t.type == TokenType::kExprOpen) {
        next();
        auto node = std::make_unique<Node>();
        node->kind = Node::Kind::kOutput;
        node->line = t.line;
        node->expr = parse_expression();
        expect(TokenType::kExprClose, "'}}'");
        body.push_back(std::move(node));
      } else if (t.type == TokenType::kStmtOpen) {
        const Token& keyword = peek(1);
        if (keyword.type == TokenType::kName && ends.count(keyword.text)) {
          next();
          end = next().text;
          return body;
        }
        next();
        body.push_back(parse_statement());
      } else {
        fail(fmt::format("unexpected '{}'", describe(t)));
      }
    }
  }

  NodePtr parse_statement() {
    const int line = peek().line;
    const std::string keyword = expect_name();
    auto node = std::make_unique<Node>();
    node->line = line;
    if (keyword == "if") {
      node->kind = Node::Kind::kIf;
      ExprPtr condition = parse_expression();
      while (true) {
        expect(TokenType::kStmtClose, "'%}'");
        std::string end;
        Body branch = parse_body({"elif", "else", "endif"}, end);
        node->branches.emplace_back(std::move(condition), std::move(branch));
        if (end == "elif") {
          condition = parse_expression();
        } else if (end == "else") {
          expect(TokenType::kStmtClose, "'%}'");
          Body else_body = parse_body({"endif"}, end);
          if (end != "endif") fail("'if' without 'endif'");
          node->branches.emplace_back(nullptr, std::move(else_body));
          break;
        } else if (end == "endif") {
          break;
        } else {
          fail("'if' without 'endif'");
        }
      }
    } else if (keyword == "for") {
      node->kind = Node::Kind::kFor;
      node->targets.push_back(expect_name());
      while (at_op(",")) {
        next();
        node->targets.push_back(expect_name());
      }
      if (!at_name("in")) fail("expected 'in' in a for loop");
      next();
      node->expr = parse_or();
      if (at_name("if")) {
        next();
        node->filter = parse_or();
      }
      if (at_name("recursive")) unsupported("a recursive for loop");
      expect(TokenType::kStmtClose, "'%}'");
      std::string end;
      node->body = parse_body({"else", "endfor"}, end);
      if (end == "else") {
        expect(TokenType::kStmtClose, "'%}'");
        node->else_body = parse_body({"endfor"}, end);
      }
      if (end != "endfor") fail("'for' without 'endfor'");
    } else if (keyword == "set") {
      node->kind = Node::Kind::kSet;
      node->targets.push_back(expect_name());
      if (at_op(".")) {
        next();
        node->attribute = expect_name();
      }
      if (at_op(",")) unsupported("unpacking in 'set'");
      if (at_op("=")) {
        next();
        node->expr = parse_expression();
      } else {
        expect(TokenType::kStmtClose, "'%}'");
        std::string end;
        node->body = parse_body({"endset"}, end);
        if (end != "endset") fail("'set' block without 'endset'");
      }
    } else if (keyword == "break" || keyword == "continue") {
      node->kind = keyword == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
    } else if (keyword == "generation") {
      // transformers' AssistantTracker marks the assistant's tokens; for rendering it is a no-op.
      node->kind = Node::Kind::kScope;
      expect(TokenType::kStmtClose, "'%}'");
      std::string end;
      node->body = parse_body({"endgeneration"}, end);
      if (end != "endgeneration") fail("'generation' without 'endgeneration'");
    } else {
      unsupported(fmt::format("'{{% {} %}}'", keyword));
    }
    expect(TokenType::kStmtClose, "'%}'");
    return node;
  }

  // expression := or ['if' or ['else' expression]]
  ExprPtr parse_expression() {
    ExprPtr value = parse_or();
    if (!at_name("if")) return value;
    const int line = next().line;
    auto e = make(Expr::Kind::kCondition, line);
    e->operands.push_back(std::move(value));
    e->operands.push_back(parse_or());
    if (at_name("else")) {
      next();
      e->operands.push_back(parse_expression());
    } else {
      e->operands.push_back(nullptr);
    }
    return e;
  }

  ExprPtr binary(std::string op, ExprPtr left, ExprPtr right, int line) {
    auto e = make(Expr::Kind::kBinary, line, std::move(op));
    e->operands.push_back(std::move(left));
    e->operands.push_back(std::move(right));
    return e;
  }

  // One left-associative level: operands from `operand`, joined by any of `ops` (operator tokens,
  // or keyword names such as "and").
  ExprPtr parse_level(std::initializer_list<std::string_view> ops, bool keywords, ExprPtr (Parser::*operand)()) {
    ExprPtr left = (this->*operand)();
    while (true) {
      const Token& t = peek();
      const bool match = t.type == (keywords ? TokenType::kName : TokenType::kOperator) &&
                         std::find(ops.begin(), ops.end(), t.text) != ops.end();
      if (!match) return left;
      const Token& op = next();
      left = binary(op.text, std::move(left), (this->*operand)(), op.line);
    }
  }

  ExprPtr parse_or() { return parse_level({"or"}, true, &Parser::parse_and); }
  ExprPtr parse_and() { return parse_level({"and"}, true, &Parser::parse_not); }

  ExprPtr parse_not() {
    if (!at_name("not")) return parse_compare();
    const int line = next().line;
    auto e = make(Expr::Kind::kUnary, line, "not");
    e->operands.push_back(parse_not());
    return e;
  }

  ExprPtr parse_compare() {
    ExprPtr left = parse_concat();
    while (true) {
      const int line = peek().line;
      std::string op;
      if (peek().type == TokenType::kOperator &&
          (at_op("==") || at_op("!=") || at_op("<") || at_op(">") || at_op("<=") || at_op(">="))) {
        op = next().text;
      } else if (at_name("in")) {
        next();
        op = "in";
      } else if (at_name("not") && peek(1).type == TokenType::kName && peek(1).text == "in") {
        next();
        next();
        op = "not in";
      } else {
        return left;
      }
      left = binary(op, std::move(left), parse_concat(), line);
    }
  }

  ExprPtr parse_concat() { return parse_level({"~"}, false, &Parser::parse_math1); }
  ExprPtr parse_math1() { return parse_level({"+", "-"}, false, &Parser::parse_math2); }
  ExprPtr parse_math2() { return parse_level({"*", "/", "//", "%"}, false, &Parser::parse_pow); }
  ExprPtr parse_pow() { return parse_level({"**"}, false, &Parser::parse_unary); }

  ExprPtr parse_unary() {
    if (at_op("-") || at_op("+")) {
      const Token& op = next();
      auto e = make(Expr::Kind::kUnary, op.line, op.text);
      e->operands.push_back(parse_unary());
      return e;
    }
    return parse_filters(parse_postfix(parse_primary()));
  }

  void parse_call_arguments(Expr& e) {
    expect_op("(");
    while (!at_op(")")) {
      if (peek().type == TokenType::kName && peek(1).type == TokenType::kOperator && peek(1).text == "=") {
        std::string key = next().text;
        next();
        e.keywords.emplace_back(std::move(key), parse_expression());
      } else {
        if (!e.keywords.empty()) fail("a positional argument after a keyword argument");
        e.operands.push_back(parse_expression());
      }
      if (!at_op(",")) break;
      next();
    }
    expect_op(")");
  }

  ExprPtr parse_postfix(ExprPtr value) {
    while (true) {
      const int line = peek().line;
      if (at_op(".")) {
        next();
        if (peek().type == TokenType::kInteger) {
          auto e = make(Expr::Kind::kItem, line);
          e->operands.push_back(std::move(value));
          auto index = make(Expr::Kind::kLiteral, line);
          index->literal = Value(static_cast<int64_t>(std::stoll(next().text)));
          e->operands.push_back(std::move(index));
          value = std::move(e);
        } else {
          auto e = make(Expr::Kind::kAttr, line, expect_name());
          e->operands.push_back(std::move(value));
          value = std::move(e);
        }
      } else if (at_op("[")) {
        next();
        value = parse_subscript(std::move(value), line);
      } else if (at_op("(")) {
        auto e = make(Expr::Kind::kCall, line);
        e->operands.push_back(std::move(value));
        parse_call_arguments(*e);
        value = std::move(e);
      } else {
        return value;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr value, int line) {
    // obj[index] or obj[start:stop:step] with any part left out.
    ExprPtr parts[3];
    int part = 0;
    bool slice = false;
    while (true) {
      if (at_op(":")) {
        slice = true;
        if (++part > 2) fail("too many ':' in a slice");
        next();
        continue;
      }
      if (at_op("]")) break;
      parts[part] = parse_expression();
      if (!at_op(":") && !at_op("]")) fail(fmt::format("expected ']' , found '{}'", describe(peek())));
    }
    next();
    auto e = make(slice ? Expr::Kind::kSlice : Expr::Kind::kItem, line);
    e->operands.push_back(std::move(value));
    if (!slice && !parts[0]) fail("empty subscript");
    for (int i = 0; i < (slice ? 3 : 1); ++i) e->operands.push_back(std::move(parts[i]));
    return e;
  }

  ExprPtr parse_filters(ExprPtr value) {
    while (true) {
      const int line = peek().line;
      if (at_op("|")) {
        next();
        auto e = make(Expr::Kind::kFilter, line, expect_name());
        e->operands.push_back(std::move(value));
        if (at_op("(")) parse_call_arguments(*e);
        value = std::move(e);
      } else if (at_name("is")) {
        next();
        auto e = make(Expr::Kind::kTest, line);
        if (at_name("not")) {
          next();
          e->negated = true;
        }
        e->name = expect_name();
        e->operands.push_back(std::move(value));
        if (at_op("(")) {
          parse_call_arguments(*e);
        } else if (peek().type == TokenType::kString || peek().type == TokenType::kInteger ||
                   peek().type == TokenType::kFloat ||
                   (peek().type == TokenType::kName && !at_name("and") && !at_name("or") && !at_name("else") &&
                    !at_name("if") && !at_name("is") && !at_name("in") && !at_name("not"))) {
          e->operands.push_back(parse_postfix(parse_primary()));  // `x is divisibleby 3`
        }
        value = std::move(e);
      } else {
        return value;
      }
    }
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    const int line = t.line;
    switch (t.type) {
      case TokenType::kName: {
        next();
        auto e = make(Expr::Kind::kLiteral, line);
        if (t.text == "true" || t.text == "True") e->literal = Value(true);
        else if (t.text == "false" || t.text == "False") e->literal = Value(false);
        else if (t.text == "none" || t.text == "None") e->literal = Value::none();
        else e = make(Expr::Kind::kName, line, t.text);
        return e;
      }
      case TokenType::kString: {
        std::string text = next().text;
        while (peek().type == TokenType::kString) text += next().text;  // adjacent literals join
        auto e = make(Expr::Kind::kLiteral, line);
        e->literal = Value(std::move(text));
        return e;
      }
      case TokenType::kInteger: {
        auto e = make(Expr::Kind::kLiteral, line);
        try {
          e->literal = Value(static_cast<int64_t>(std::stoll(next().text)));
        } catch (const std::out_of_range&) {
          fail("integer literal out of range");
        }
        return e;
      }
      case TokenType::kFloat: {
        auto e = make(Expr::Kind::kLiteral, line);
        e->literal = Value(std::stod(next().text));
        return e;
      }
      case TokenType::kOperator: {
        if (t.text == "(") {
          next();
          ExprPtr inner = parse_expression();
          if (at_op(",")) {  // a tuple: a list is close enough for iteration and `in`
            auto list = make(Expr::Kind::kList, line);
            list->operands.push_back(std::move(inner));
            while (at_op(",")) {
              next();
              if (at_op(")")) break;
              list->operands.push_back(parse_expression());
            }
            inner = std::move(list);
          }
          expect_op(")");
          return inner;
        }
        if (t.text == "[") {
          next();
          auto list = make(Expr::Kind::kList, line);
          while (!at_op("]")) {
            list->operands.push_back(parse_expression());
            if (!at_op(",")) break;
            next();
          }
          expect_op("]");
          return list;
        }
        if (t.text == "{") {
          next();
          auto dict = make(Expr::Kind::kDict, line);
          while (!at_op("}")) {
            dict->operands.push_back(parse_expression());
            expect_op(":");
            dict->operands.push_back(parse_expression());
            if (!at_op(",")) break;
            next();
          }
          expect_op("}");
          return dict;
        }
        break;
      }
      default: break;
    }
    fail(fmt::format("unexpected '{}' in an expression", describe(t)));
  }

  std::vector<Token> tokens_;
  std::size_t pos_ = 0;
};

}  // namespace

Body parse(std::string_view source) { return Parser(lex(source)).parse_template(); }

}  // namespace cachalot::tokenizer::jinja
