#include "tokenizer/jinja_value.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>

namespace cachalot::tokenizer::jinja {
namespace {

std::string python_float(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", f);  // shortest round-trip form, as Python's repr
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string python_string_repr(const std::string& s) {
  // Python prefers single quotes unless the text holds one and no double quote.
  const bool use_double = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char quote = use_double ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c == quote) out += '\\';
        out += c;
    }
  }
  return out + quote;
}

void write_json(const Value& v, int indent, int depth, std::string& out) {
  auto newline = [&](int level) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<std::size_t>(indent * level), ' ');
  };
  const char* item_separator = indent < 0 ? ", " : ",";
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: out += "null"; break;
    case Value::Kind::kBool: out += v.as_bool() ? "true" : "false"; break;
    case Value::Kind::kInt: out += std::to_string(v.as_int()); break;
    case Value::Kind::kFloat: out += python_float(v.as_float()); break;
    case Value::Kind::kString: {
      // ensure_ascii=False: only quotes, backslashes and control characters are escaped.
      out += nlohmann::json(v.as_string()).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      break;
    }
    case Value::Kind::kList: {
      out += '[';
      const List& list = v.as_list();
      for (std::size_t i = 0; i < list.size(); ++i) {
        if (i) out += item_separator;
        newline(depth + 1);
        write_json(list[i], indent, depth + 1, out);
      }
      if (!list.empty()) newline(depth);
      out += ']';
      break;
    }
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      out += '{';
      const Dict& dict = v.as_dict();
      for (std::size_t i = 0; i < dict.size(); ++i) {
        if (i) out += item_separator;
        newline(depth + 1);
        out += nlohmann::json(dict[i].first).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        out += ": ";
        write_json(dict[i].second, indent, depth + 1, out);
      }
      if (!dict.empty()) newline(depth);
      out += '}';
      break;
    }
  }
}

}  // namespace

Value Value::none() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value Value::dict(Dict entries) {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<Dict>(std::move(entries));
  return v;
}

Value Value::namespace_object(Dict entries) {
  Value v = dict(std::move(entries));
  v.kind_ = Kind::kNamespace;
  return v;
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return none();
    case nlohmann::ordered_json::value_t::boolean: return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned: return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_float: return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List list;
      list.reserve(j.size());
      for (const auto& item : j) list.push_back(from_json(item));
      return Value(std::move(list));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict entries;
      for (const auto& [key, item] : j.items()) entries.emplace_back(key, from_json(item));
      return dict(std::move(entries));
    }
    default: return Value();
  }
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool:
    case Kind::kInt: return int_ != 0;
    case Kind::kFloat: return float_ != 0.0;
    case Kind::kString: return !string_->empty();
    case Kind::kList: return !list_->empty();
    case Kind::kDict: return !dict_->empty();
    case Kind::kNamespace: return true;
  }
  return false;
}

Value Value::get(std::string_view key) const {
  if (!is_mapping()) return Value();
  for (const auto& [k, v] : *dict_)
    if (k == key) return v;
  return Value();
}

void Value::set(const std::string& key, Value value) const {
  for (auto& [k, v] : *dict_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  dict_->emplace_back(key, std::move(value));
}

std::string Value::str() const {
  switch (kind_) {
    case Kind::kUndefined: return "";
    case Kind::kString: return *string_;
    default: return repr();
  }
}

std::string Value::repr() const {
  switch (kind_) {
    case Kind::kUndefined: return "";
    case Kind::kNone: return "None";
    case Kind::kBool: return int_ ? "True" : "False";
    case Kind::kInt: return std::to_string(int_);
    case Kind::kFloat: return python_float(float_);
    case Kind::kString: return python_string_repr(*string_);
    case Kind::kList: {
      std::string out = "[";
      for (std::size_t i = 0; i < list_->size(); ++i) out += (i ? ", " : "") + (*list_)[i].repr();
      return out + "]";
    }
    case Kind::kDict:
    case Kind::kNamespace: {
      std::string out = kind_ == Kind::kNamespace ? "<Namespace {" : "{";
      for (std::size_t i = 0; i < dict_->size(); ++i)
        out += (i ? ", " : "") + python_string_repr((*dict_)[i].first) + ": " + (*dict_)[i].second.repr();
      return out + (kind_ == Kind::kNamespace ? "}>" : "}");
    }
  }
  return "";
}

std::string Value::to_json_text(int indent) const {
  std::string out;
  write_json(*this, indent, 0, out);
  return out;
}

std::string_view Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined: return "undefined";
    case Kind::kNone: return "none";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "string";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "namespace";
  }
  return "?";
}

bool operator==(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind_ == Value::Kind::kInt && b.kind_ == Value::Kind::kInt) return a.int_ == b.int_;
    return a.as_float() == b.as_float();
  }
  // Python: True == 1; bools compare as numbers against numbers.
  if ((a.kind_ == Value::Kind::kBool && b.is_number()) || (b.kind_ == Value::Kind::kBool && a.is_number()))
    return a.as_float() == b.as_float();
  if (a.kind_ != b.kind_) return false;
  switch (a.kind_) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kBool: return a.int_ == b.int_;
    case Value::Kind::kString: return *a.string_ == *b.string_;
    case Value::Kind::kList: return *a.list_ == *b.list_;
    case Value::Kind::kDict: return *a.dict_ == *b.dict_;
    case Value::Kind::kNamespace: return a.dict_ == b.dict_;
    default: return false;
  }
}

}  // namespace cachalot::tokenizer::jinja
