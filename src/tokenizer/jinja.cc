// The Jinja interpreter: walks the syntax tree with a stack of scopes (a for loop's body is its
// own scope, as in Jinja2, which is why templates carry state across iterations in a namespace).
#include "tokenizer/jinja.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <stdexcept>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_builtins.h"

namespace cachalot::tokenizer::jinja {
namespace {

enum class Flow { kNormal, kBreak, kContinue };

class Interpreter {
 public:
  explicit Interpreter(const nlohmann::ordered_json& context) {
    scopes_.emplace_back();
    for (const auto& [key, value] : context.items()) scopes_.back()[key] = Value::from_json(value);
  }

  std::string run(const Body& body) {
    std::string out;
    if (render(body, out) != Flow::kNormal) fail(0, "'break' or 'continue' outside a loop");
    return out;
  }

 private:
  using Scope = std::unordered_map<std::string, Value>;

  [[noreturn]] static void fail(int line, const std::string& what) {
    raise(ErrorKind::kInvalidArgument, "chat template: line {}: {}", line, what);
  }

  Value* lookup(const std::string& name) {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      const auto found = it->find(name);
      if (found != it->end()) return &found->second;
    }
    return nullptr;
  }

  Flow render(const Body& body, std::string& out) {
    for (const NodePtr& node : body) {
      const Flow flow = render(*node, out);
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  Flow render(const Node& node, std::string& out) {
    switch (node.kind) {
      case Node::Kind::kText: out += node.text; return Flow::kNormal;
      case Node::Kind::kOutput: out += eval(*node.expr).str(); return Flow::kNormal;
      case Node::Kind::kBreak: return Flow::kBreak;
      case Node::Kind::kContinue: return Flow::kContinue;
      case Node::Kind::kScope: return render(node.body, out);
      case Node::Kind::kIf:
        for (const auto& [condition, branch] : node.branches) {
          if (!condition || eval(*condition).truthy()) return render(branch, out);
        }
        return Flow::kNormal;
      case Node::Kind::kSet: {
        Value value;
        if (node.expr) {
          value = eval(*node.expr);
        } else {
          std::string captured;
          render(node.body, captured);
          value = Value(std::move(captured));
        }
        if (node.attribute.empty()) {
          scopes_.back()[node.targets[0]] = std::move(value);
        } else {
          Value* object = lookup(node.targets[0]);
          if (!object || object->kind() != Value::Kind::kNamespace) {
            fail(node.line, "'set " + node.targets[0] + "." + node.attribute + "' needs " + node.targets[0] +
                                " to be a namespace()");
          }
          object->set(node.attribute, std::move(value));
        }
        return Flow::kNormal;
      }
      case Node::Kind::kFor: return render_for(node, out);
    }
    return Flow::kNormal;
  }

  void bind_targets(const Node& node, const Value& item) {
    if (node.targets.size() == 1) {
      scopes_.back()[node.targets[0]] = item;
      return;
    }
    const std::vector<Value> parts = wrap(node.line, [&] { return iterate(item); });
    if (parts.size() != node.targets.size()) {
      fail(node.line, "cannot unpack " + std::to_string(parts.size()) + " values into " +
                          std::to_string(node.targets.size()) + " loop variables");
    }
    for (std::size_t i = 0; i < parts.size(); ++i) scopes_.back()[node.targets[i]] = parts[i];
  }

  Flow render_for(const Node& node, std::string& out) {
    const Value iterable = eval(*node.expr);
    std::vector<Value> items = wrap(node.line, [&] { return iterate(iterable); });
    if (node.filter) {
      // The inline `if` filters before the loop variables are computed, as in Jinja2.
      std::vector<Value> kept;
      for (const Value& item : items) {
        scopes_.emplace_back();
        bind_targets(node, item);
        if (eval(*node.filter).truthy()) kept.push_back(item);
        scopes_.pop_back();
      }
      items = std::move(kept);
    }
    if (items.empty()) return render(node.else_body, out);
    const auto n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      scopes_.emplace_back();
      bind_targets(node, items[i]);
      scopes_.back()["loop"] = Value::dict({{"index", Value(i + 1)},
                                            {"index0", Value(i)},
                                            {"revindex", Value(n - i)},
                                            {"revindex0", Value(n - i - 1)},
                                            {"first", Value(i == 0)},
                                            {"last", Value(i == n - 1)},
                                            {"length", Value(n)},
                                            {"previtem", i > 0 ? items[i - 1] : Value()},
                                            {"nextitem", i + 1 < n ? items[i + 1] : Value()}});
      const Flow flow = render(node.body, out);
      scopes_.pop_back();
      if (flow == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  // Runs a builtin, turning its std::invalid_argument into an error with the line.
  template <typename F>
  auto wrap(int line, F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const std::invalid_argument& e) {
      fail(line, e.what());
    }
  }

  std::vector<Value> eval_args(const Expr& e, std::size_t first, Keywords& keywords) {
    std::vector<Value> args;
    for (std::size_t i = first; i < e.operands.size(); ++i) args.push_back(eval(*e.operands[i]));
    for (const auto& [key, value] : e.keywords) keywords.emplace_back(key, eval(*value));
    return args;
  }

  Value eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral: return e.literal;
      case Expr::Kind::kName: {
        const Value* v = lookup(e.name);
        return v ? *v : Value();
      }
      case Expr::Kind::kAttr: {
        const Value object = eval(*e.operands[0]);
        if (object.is_undefined()) fail(e.line, "cannot read '." + e.name + "' of an undefined value");
        return object.get(e.name);
      }
      case Expr::Kind::kItem: {
        const Value object = eval(*e.operands[0]);
        const Value index = eval(*e.operands[1]);
        return wrap(e.line, [&] { return index_of(object, index); });
      }
      case Expr::Kind::kSlice: {
        const Value object = eval(*e.operands[0]);
        Value parts[3];
        for (int i = 0; i < 3; ++i)
          if (e.operands[i + 1]) parts[i] = eval(*e.operands[i + 1]);
        return wrap(e.line, [&] {
          return slice_of(object, e.operands[1] ? &parts[0] : nullptr, e.operands[2] ? &parts[1] : nullptr,
                          e.operands[3] ? &parts[2] : nullptr);
        });
      }
      case Expr::Kind::kCall: return eval_call(e);
      case Expr::Kind::kFilter: {
        const Value subject = eval(*e.operands[0]);
        Keywords keywords;
        const std::vector<Value> args = eval_args(e, 1, keywords);
        Value result;
        if (!wrap(e.line, [&] { return apply_filter(e.name, subject, args, keywords, &result); })) {
          raise(ErrorKind::kUnsupported, "chat template: line {}: filter '{}' is not supported by cachalot's Jinja subset",
                e.line, e.name);
        }
        return result;
      }
      case Expr::Kind::kTest: {
        const Value subject = eval(*e.operands[0]);
        Keywords keywords;
        const std::vector<Value> args = eval_args(e, 1, keywords);
        bool result = false;
        if (!wrap(e.line, [&] { return apply_test(e.name, subject, args, &result); })) {
          raise(ErrorKind::kUnsupported, "chat template: line {}: test '{}' is not supported by cachalot's Jinja subset",
                e.line, e.name);
        }
        return Value(result != e.negated);
      }
      case Expr::Kind::kUnary: {
        const Value v = eval(*e.operands[0]);
        if (e.name == "not") return Value(!v.truthy());
        if (!v.is_number()) fail(e.line, "unary " + e.name + " needs a number, got " + std::string(v.type_name()));
        if (e.name == "+") return v;
        return v.kind() == Value::Kind::kInt ? Value(-v.as_int()) : Value(-v.as_float());
      }
      case Expr::Kind::kBinary: return eval_binary(e);
      case Expr::Kind::kCondition:
        if (eval(*e.operands[1]).truthy()) return eval(*e.operands[0]);
        return e.operands[2] ? eval(*e.operands[2]) : Value();
      case Expr::Kind::kList: {
        List items;
        for (const ExprPtr& item : e.operands) items.push_back(eval(*item));
        return Value(std::move(items));
      }
      case Expr::Kind::kDict: {
        Value dict = Value::dict();
        for (std::size_t i = 0; i + 1 < e.operands.size(); i += 2) {
          const Value key = eval(*e.operands[i]);
          if (!key.is_string()) fail(e.line, "dict keys must be strings");
          dict.set(key.as_string(), eval(*e.operands[i + 1]));
        }
        return dict;
      }
    }
    return Value();
  }

  Value eval_call(const Expr& e) {
    const Expr& callee = *e.operands[0];
    Keywords keywords;
    const std::vector<Value> args = eval_args(e, 1, keywords);
    Value result;
    if (callee.kind == Expr::Kind::kAttr) {
      const Value object = eval(*callee.operands[0]);
      if (wrap(e.line, [&] { return call_method(object, callee.name, args, keywords, &result); })) return result;
      raise(ErrorKind::kUnsupported, "chat template: line {}: method '{}' of {} is not supported by cachalot's Jinja subset",
            e.line, callee.name, object.type_name());
    }
    if (callee.kind == Expr::Kind::kName && !lookup(callee.name)) {
      if (callee.name == "raise_exception") {
        fail(e.line, "the template refused the conversation: " + (args.empty() ? std::string() : args[0].str()));
      }
      if (wrap(e.line, [&] { return call_global(callee.name, args, keywords, &result); })) return result;
      raise(ErrorKind::kUnsupported, "chat template: line {}: function '{}' is not supported by cachalot's Jinja subset",
            e.line, callee.name);
    }
    fail(e.line, "this value cannot be called");
  }

  Value eval_binary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value left = eval(*e.operands[0]);
      return left.truthy() ? eval(*e.operands[1]) : left;
    }
    if (op == "or") {
      Value left = eval(*e.operands[0]);
      return left.truthy() ? left : eval(*e.operands[1]);
    }
    const Value a = eval(*e.operands[0]);
    const Value b = eval(*e.operands[1]);
    if (op == "~") return Value(a.str() + b.str());
    if (op == "==") return Value(a == b);
    if (op == "!=") return Value(!(a == b));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.is_string()) {
        if (!a.is_string()) fail(e.line, "'in <string>' needs a string on the left");
        found = b.as_string().find(a.as_string()) != std::string::npos;
      } else if (b.is_mapping()) {
        found = a.is_string() && !b.get(a.as_string()).is_undefined();
      } else {
        for (const Value& item : wrap(e.line, [&] { return iterate(b); })) found = found || item == a;
      }
      return Value(found != (op == "not in"));
    }
    auto type_error = [&]() -> Value {
      fail(e.line, "unsupported operand types for " + op + ": " + std::string(a.type_name()) + " and " +
                       std::string(b.type_name()));
    };
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int order = 0;
      if (a.is_number() && b.is_number()) order = a.as_float() < b.as_float() ? -1 : (a.as_float() > b.as_float() ? 1 : 0);
      else if (a.is_string() && b.is_string()) order = a.as_string().compare(b.as_string());
      else return type_error();
      if (op == "<") return Value(order < 0);
      if (op == ">") return Value(order > 0);
      if (op == "<=") return Value(order <= 0);
      return Value(order >= 0);
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
      if (a.is_list() && b.is_list()) {
        List joined = a.as_list();
        joined.insert(joined.end(), b.as_list().begin(), b.as_list().end());
        return Value(std::move(joined));
      }
    }
    if (op == "*" && a.is_string() && b.kind() == Value::Kind::kInt) {
      std::string repeated;
      for (int64_t i = 0; i < b.as_int(); ++i) repeated += a.as_string();
      return Value(std::move(repeated));
    }
    if (!a.is_number() || !b.is_number()) return type_error();
    const bool ints = a.kind() == Value::Kind::kInt && b.kind() == Value::Kind::kInt;
    if (op == "+") return ints ? Value(a.as_int() + b.as_int()) : Value(a.as_float() + b.as_float());
    if (op == "-") return ints ? Value(a.as_int() - b.as_int()) : Value(a.as_float() - b.as_float());
    if (op == "*") return ints ? Value(a.as_int() * b.as_int()) : Value(a.as_float() * b.as_float());
    if (op == "**") return ints && b.as_int() >= 0 ? Value(static_cast<int64_t>(std::pow(a.as_int(), b.as_int())))
                                                   : Value(std::pow(a.as_float(), b.as_float()));
    if (b.as_float() == 0.0) fail(e.line, "division by zero");
    if (op == "/") return Value(a.as_float() / b.as_float());
    if (op == "//") {
      if (ints) {
        const int64_t q = a.as_int() / b.as_int();
        return Value(q - ((a.as_int() % b.as_int() != 0) && ((a.as_int() < 0) != (b.as_int() < 0))));
      }
      return Value(std::floor(a.as_float() / b.as_float()));
    }
    if (op == "%") {
      if (ints) {
        const int64_t r = a.as_int() % b.as_int();
        return Value(r != 0 && ((r < 0) != (b.as_int() < 0)) ? r + b.as_int() : r);
      }
      const double r = std::fmod(a.as_float(), b.as_float());
      return Value(r != 0 && ((r < 0) != (b.as_float() < 0)) ? r + b.as_float() : r);
    }
    return type_error();
  }

  std::vector<Scope> scopes_;
};

}  // namespace

Template::Template(std::string_view source) : body_(std::make_unique<Body>(parse(source))) {}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const nlohmann::ordered_json& context) const {
  return Interpreter(context).run(*body_);
}

}  // namespace cachalot::tokenizer::jinja
