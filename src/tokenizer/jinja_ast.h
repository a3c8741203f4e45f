// The syntax tree of a parsed Jinja template (internal to the Jinja subset).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace cachalot::tokenizer::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // literal
    kName,     // name
    kAttr,     // operands[0].name
    kItem,     // operands[0][operands[1]]
    kSlice,    // operands[0][operands[1]:operands[2]:operands[3]] (null parts omitted)
    kCall,     // operands[0](operands[1..], keywords)
    kFilter,   // operands[0] | name(operands[1..], keywords)
    kTest,     // operands[0] is [not] name(operands[1..])
    kUnary,    // name: "not", "-", "+"
    kBinary,   // name: the operator; operands[0], operands[1]
    kCondition,// operands[0] if operands[1] else operands[2] (may be null)
    kList,     // [operands...]
    kDict,     // {operands[0]: operands[1], ...}
  };
  Kind kind;
  int line;
  std::string name;
  Value literal;
  bool negated = false;
  std::vector<ExprPtr> operands;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Node {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches: (condition, body)...; a null condition is the else branch
    kFor,       // for targets in expr [if filter]: body [else: else_body]
    kSet,       // set target[.attribute] = expr, or {% set target %}body{% endset %}
    kBreak,
    kContinue,
    kScope,     // a transparent block ({% generation %}): body
  };
  Kind kind;
  int line;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<std::pair<ExprPtr, Body>> branches;
  std::vector<std::string> targets;
  std::string attribute;
  Body body, else_body;
};

// Parses lexed tokens into a body. Throws Error(kInvalidArgument) for syntax errors and
// Error(kUnsupported) for Jinja features outside the subset, both with the line.
Body parse(std::string_view source);

}  // namespace cachalot::tokenizer::jinja
