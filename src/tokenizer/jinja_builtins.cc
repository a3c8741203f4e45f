#include "tokenizer/jinja_builtins.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <stdexcept>

#include "tokenizer/utf8.h"

namespace cachalot::tokenizer::jinja {
namespace {

[[noreturn]] void bad(const std::string& message) { throw std::invalid_argument(message); }

std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t pos = 0; pos < s.size();) {
    std::size_t len = utf8::sequence_length(s, pos);
    if (len == 0) len = 1;
    out.push_back(s.substr(pos, len));
    pos += len;
  }
  return out;
}

const Value* keyword(const Keywords& keywords, std::string_view name) {
  for (const auto& [k, v] : keywords)
    if (k == name) return &v;
  return nullptr;
}

// The i-th positional argument, else the keyword of that name, else nullptr.
const Value* argument(const std::vector<Value>& args, const Keywords& keywords, std::size_t i, std::string_view name) {
  if (i < args.size()) return &args[i];
  return keyword(keywords, name);
}

const std::string& need_string(const Value& v, std::string_view what) {
  if (!v.is_string()) bad(fmt::format("{} must be a string, got {}", what, v.type_name()));
  return v.as_string();
}

bool is_python_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string strip(const std::string& s, const Value* chars, bool left, bool right) {
  auto strip_this = [&](char c) {
    return chars && chars->is_string() ? chars->as_string().find(c) != std::string::npos : is_python_space(c);
  };
  std::size_t begin = 0, end = s.size();
  if (left)
    while (begin < end && strip_this(s[begin])) ++begin;
  if (right)
    while (end > begin && strip_this(s[end - 1])) --end;
  return s.substr(begin, end - begin);
}

Value split(const std::string& s, const Value* separator, const Value* max_split) {
  const int64_t limit = max_split && max_split->is_number() ? max_split->as_int() : -1;
  List parts;
  if (!separator || separator->is_none() || separator->is_undefined()) {
    // Python's split(): runs of whitespace separate, no empty parts.
    std::size_t pos = 0;
    while (pos < s.size()) {
      while (pos < s.size() && is_python_space(s[pos])) ++pos;
      if (pos >= s.size()) break;
      if (limit >= 0 && static_cast<int64_t>(parts.size()) == limit) {
        std::string rest = s.substr(pos);
        while (!rest.empty() && is_python_space(rest.back())) rest.pop_back();
        parts.emplace_back(rest);
        break;
      }
      std::size_t end = pos;
      while (end < s.size() && !is_python_space(s[end])) ++end;
      parts.emplace_back(s.substr(pos, end - pos));
      pos = end;
    }
    return Value(std::move(parts));
  }
  const std::string& sep = need_string(*separator, "split's separator");
  if (sep.empty()) bad("split: empty separator");
  std::size_t pos = 0;
  while (true) {
    const std::size_t found = s.find(sep, pos);
    if (found == std::string::npos || (limit >= 0 && static_cast<int64_t>(parts.size()) == limit)) {
      parts.emplace_back(s.substr(pos));
      break;
    }
    parts.emplace_back(s.substr(pos, found - pos));
    pos = found + sep.size();
  }
  return Value(std::move(parts));
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  if (from.empty()) return s;
  std::string out;
  std::size_t pos = 0;
  for (int64_t done = 0; count < 0 || done < count; ++done) {
    const std::size_t found = s.find(from, pos);
    if (found == std::string::npos) break;
    out.append(s, pos, found - pos).append(to);
    pos = found + from.size();
  }
  return out.append(s, pos, std::string::npos);
}

std::string to_case(std::string s, bool upper) {
  for (char& c : s) c = static_cast<char>(upper ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Value items_of(const Value& v) {
  if (!v.is_mapping()) bad(fmt::format("items() needs a dict, got {}", v.type_name()));
  List items;
  for (const auto& [k, item] : v.as_dict()) items.emplace_back(List{Value(k), item});
  return Value(std::move(items));
}

}  // namespace

int64_t length_of(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kString: return static_cast<int64_t>(code_points(v.as_string()).size());
    case Value::Kind::kList: return static_cast<int64_t>(v.as_list().size());
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: return static_cast<int64_t>(v.as_dict().size());
    case Value::Kind::kUndefined: return 0;
    default: bad(fmt::format("object of type {} has no length", v.type_name()));
  }
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return {};  // Jinja iterates an undefined value as empty
    case Value::Kind::kList: return v.as_list();
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& [k, item] : v.as_dict()) keys.emplace_back(k);
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (auto& c : code_points(v.as_string())) chars.emplace_back(std::move(c));
      return chars;
    }
    default: bad(fmt::format("{} is not iterable", v.type_name()));
  }
}

Value index_of(const Value& container, const Value& index) {
  if (container.is_mapping()) {
    if (!index.is_string()) return Value();
    return container.get(index.as_string());
  }
  if (container.is_list() || container.is_string()) {
    if (index.kind() != Value::Kind::kInt) bad(fmt::format("indices must be integers, got {}", index.type_name()));
    const int64_t n = length_of(container);
    int64_t i = index.as_int();
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value();
    if (container.is_list()) return container.as_list()[i];
    return Value(code_points(container.as_string())[i]);
  }
  if (container.is_undefined()) bad("cannot index an undefined value");
  bad(fmt::format("{} cannot be indexed", container.type_name()));
}

Value slice_of(const Value& container, const Value* start, const Value* stop, const Value* step) {
  auto get = [](const Value* v, int64_t fallback) {
    return v && v->kind() == Value::Kind::kInt ? v->as_int() : fallback;
  };
  const int64_t n = length_of(container);
  const int64_t s = get(step, 1);
  if (s == 0) bad("slice step cannot be zero");
  auto clamp = [&](int64_t i) {
    if (i < 0) i += n;
    if (s > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  int64_t begin = start && start->kind() == Value::Kind::kInt ? clamp(start->as_int()) : (s > 0 ? 0 : n - 1);
  int64_t end = stop && stop->kind() == Value::Kind::kInt ? clamp(stop->as_int()) : (s > 0 ? n : -1);
  std::vector<int64_t> picked;
  for (int64_t i = begin; s > 0 ? i < end : i > end; i += s) picked.push_back(i);
  if (container.is_list()) {
    List out;
    for (int64_t i : picked) out.push_back(container.as_list()[i]);
    return Value(std::move(out));
  }
  if (container.is_string()) {
    const auto chars = code_points(container.as_string());
    std::string out;
    for (int64_t i : picked) out += chars[i];
    return Value(std::move(out));
  }
  bad(fmt::format("{} cannot be sliced", container.type_name()));
}

bool apply_filter(std::string_view name, const Value& v, const std::vector<Value>& args, const Keywords& kw, Value* out) {
  if (name == "length" || name == "count") {
    *out = Value(length_of(v));
  } else if (name == "string") {
    *out = Value(v.str());
  } else if (name == "trim") {
    *out = Value(strip(v.str(), argument(args, kw, 0, "chars"), true, true));
  } else if (name == "upper" || name == "lower") {
    *out = Value(to_case(v.str(), name == "upper"));
  } else if (name == "capitalize") {
    std::string s = to_case(v.str(), false);
    if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
    *out = Value(std::move(s));
  } else if (name == "safe" || name == "e" || name == "escape" || name == "forceescape") {
    // Chat templates render without autoescaping; escape would HTML-escape, which no chat
    // template wants on a prompt, so only the pass-through ones are accepted.
    if (name != "safe") bad(fmt::format("filter '{}' (HTML escaping) is not supported", name));
    *out = v;
  } else if (name == "default" || name == "d") {
    const Value* fallback = argument(args, kw, 0, "default_value");
    const Value* boolean = argument(args, kw, 1, "boolean");
    const bool use_fallback = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
    *out = use_fallback ? (fallback ? *fallback : Value(std::string())) : v;
  } else if (name == "first" || name == "last") {
    const auto items = iterate(v);
    *out = items.empty() ? Value() : (name == "first" ? items.front() : items.back());
  } else if (name == "join") {
    const Value* sep = argument(args, kw, 0, "d");
    std::string joined;
    bool first = true;
    for (const Value& item : iterate(v)) {
      if (!first && sep) joined += sep->str();
      joined += item.str();
      first = false;
    }
    *out = Value(std::move(joined));
  } else if (name == "tojson") {
    const Value* indent = argument(args, kw, 0, "indent");
    *out = Value(v.to_json_text(indent && indent->is_number() ? static_cast<int>(indent->as_int()) : -1));
  } else if (name == "list") {
    *out = Value(iterate(v));
  } else if (name == "items") {
    *out = items_of(v);
  } else if (name == "reverse") {
    if (v.is_string()) {
      auto chars = code_points(v.as_string());
      std::reverse(chars.begin(), chars.end());
      std::string s;
      for (auto& c : chars) s += c;
      *out = Value(std::move(s));
    } else {
      auto items = iterate(v);
      std::reverse(items.begin(), items.end());
      *out = Value(std::move(items));
    }
  } else if (name == "replace") {
    if (args.size() < 2) bad("replace needs the old and new strings");
    const Value* count = argument(args, kw, 2, "count");
    *out = Value(replace_all(v.str(), args[0].str(), args[1].str(), count && count->is_number() ? count->as_int() : -1));
  } else if (name == "int") {
    if (v.is_number()) *out = Value(static_cast<int64_t>(v.as_float()));
    else {
      try {
        *out = Value(static_cast<int64_t>(std::stoll(v.str())));
      } catch (const std::exception&) {
        *out = Value(static_cast<int64_t>(0));
      }
    }
  } else if (name == "float") {
    try {
      *out = v.is_number() ? Value(v.as_float()) : Value(std::stod(v.str()));
    } catch (const std::exception&) {
      *out = Value(0.0);
    }
  } else if (name == "abs") {
    if (!v.is_number()) bad("abs needs a number");
    *out = v.kind() == Value::Kind::kInt ? Value(static_cast<int64_t>(std::llabs(v.as_int()))) : Value(std::fabs(v.as_float()));
  } else if (name == "map" || name == "selectattr" || name == "rejectattr") {
    // The attribute forms: xs|map(attribute='a'), xs|selectattr('a'[, 'equalto', value]).
    List result;
    if (name == "map") {
      const Value* attribute = keyword(kw, "attribute");
      if (!attribute) bad("map is supported with attribute= only");
      for (const Value& item : iterate(v)) result.push_back(item.get(attribute->str()));
    } else {
      if (args.empty()) bad(fmt::format("{} needs an attribute name", name));
      for (const Value& item : iterate(v)) {
        const Value attr = item.get(args[0].str());
        bool pass = attr.truthy();
        if (args.size() >= 2) {
          std::vector<Value> test_args(args.begin() + 2, args.end());
          if (!apply_test(args[1].str(), attr, test_args, &pass)) bad(fmt::format("unknown test '{}'", args[1].str()));
        }
        if (pass == (name == "selectattr")) result.push_back(item);
      }
    }
    *out = Value(std::move(result));
  } else {
    return false;
  }
  return true;
}

bool apply_test(std::string_view name, const Value& v, const std::vector<Value>& args, bool* out) {
  if (name == "defined") *out = !v.is_undefined();
  else if (name == "undefined") *out = v.is_undefined();
  else if (name == "none") *out = v.is_none();
  else if (name == "string") *out = v.is_string();
  else if (name == "number") *out = v.is_number();
  else if (name == "integer") *out = v.kind() == Value::Kind::kInt;
  else if (name == "float") *out = v.kind() == Value::Kind::kFloat;
  else if (name == "boolean") *out = v.kind() == Value::Kind::kBool;
  else if (name == "true") *out = v.kind() == Value::Kind::kBool && v.as_bool();
  else if (name == "false") *out = v.kind() == Value::Kind::kBool && !v.as_bool();
  else if (name == "mapping") *out = v.is_mapping();
  else if (name == "sequence") *out = v.is_list() || v.is_string() || v.is_mapping();
  else if (name == "iterable") *out = v.is_list() || v.is_string() || v.is_mapping();
  else if (name == "callable") *out = false;
  else if (name == "odd" || name == "even") {
    if (v.kind() != Value::Kind::kInt) bad(fmt::format("'{}' needs an integer", name));
    *out = (v.as_int() % 2 != 0) == (name == "odd");
  } else if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") {
    if (args.empty()) bad(fmt::format("test '{}' needs a value", name));
    *out = v == args[0];
  } else if (name == "in") {
    if (args.empty()) bad("test 'in' needs a container");
    bool found = false;
    for (const Value& item : iterate(args[0])) found = found || item == v;
    *out = found;
  } else {
    return false;
  }
  return true;
}

bool call_method(const Value& obj, std::string_view name, const std::vector<Value>& args, const Keywords& kw, Value* out) {
  if (obj.is_string()) {
    const std::string& s = obj.as_string();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      *out = Value(strip(s, argument(args, kw, 0, "chars"), name != "rstrip", name != "lstrip"));
    } else if (name == "split") {
      *out = split(s, argument(args, kw, 0, "sep"), argument(args, kw, 1, "maxsplit"));
    } else if (name == "startswith" || name == "endswith") {
      if (args.empty()) bad(fmt::format("{} needs an argument", name));
      std::vector<Value> candidates = args[0].is_list() ? args[0].as_list() : std::vector<Value>{args[0]};
      bool match = false;
      for (const Value& c : candidates) {
        const std::string& text = need_string(c, name);
        match = match || (name == "startswith" ? s.starts_with(text) : s.ends_with(text));
      }
      *out = Value(match);
    } else if (name == "upper" || name == "lower") {
      *out = Value(to_case(s, name == "upper"));
    } else if (name == "replace") {
      if (args.size() < 2) bad("replace needs the old and new strings");
      *out = Value(replace_all(s, need_string(args[0], "replace's old"), need_string(args[1], "replace's new"),
                               args.size() > 2 && args[2].is_number() ? args[2].as_int() : -1));
    } else if (name == "find") {
      if (args.empty()) bad("find needs an argument");
      const std::size_t at = s.find(need_string(args[0], "find's argument"));
      *out = Value(at == std::string::npos ? static_cast<int64_t>(-1) : length_of(Value(s.substr(0, at))));
    } else {
      return false;
    }
    return true;
  }
  if (obj.is_mapping()) {
    if (name == "get") {
      if (args.empty()) bad("get needs a key");
      const Value found = obj.get(args[0].str());
      *out = found.is_undefined() ? (args.size() > 1 ? args[1] : Value::none()) : found;
    } else if (name == "items") {
      *out = items_of(obj);
    } else if (name == "keys" || name == "values") {
      List result;
      for (const auto& [k, item] : obj.as_dict()) result.push_back(name == "keys" ? Value(k) : item);
      *out = Value(std::move(result));
    } else {
      return false;
    }
    return true;
  }
  if (obj.is_list() && name == "append") {
    if (args.size() != 1) bad("append takes one argument");
    obj.as_list().push_back(args[0]);
    *out = Value::none();
    return true;
  }
  return false;
}

bool call_global(std::string_view name, const std::vector<Value>& args, const Keywords& kw, Value* out) {
  if (name == "namespace") {
    Dict entries;
    for (const auto& [k, v] : kw) entries.emplace_back(k, v);
    *out = Value::namespace_object(std::move(entries));
  } else if (name == "dict") {
    Dict entries;
    for (const auto& [k, v] : kw) entries.emplace_back(k, v);
    *out = Value::dict(std::move(entries));
  } else if (name == "range") {
    if (args.empty() || args.size() > 3) bad("range takes 1 to 3 arguments");
    for (const Value& a : args)
      if (a.kind() != Value::Kind::kInt) bad("range needs integers");
    const int64_t start = args.size() > 1 ? args[0].as_int() : 0;
    const int64_t stop = args.size() > 1 ? args[1].as_int() : args[0].as_int();
    const int64_t step = args.size() > 2 ? args[2].as_int() : 1;
    if (step == 0) bad("range step cannot be zero");
    List values;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) values.emplace_back(i);
    *out = Value(std::move(values));
  } else if (name == "strftime_now") {
    // transformers provides it for templates that print today's date.
    if (args.empty()) bad("strftime_now needs a format");
    const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm local{};
    localtime_r(&now, &local);
    char buffer[256];
    const std::size_t n = std::strftime(buffer, sizeof(buffer), args[0].str().c_str(), &local);
    *out = Value(std::string(buffer, n));
  } else {
    return false;
  }
  return true;
}

}  // namespace cachalot::tokenizer::jinja
