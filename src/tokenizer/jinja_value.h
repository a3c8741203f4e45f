// Values of the Jinja subset: what Python's Jinja2 would hold (None, bool, int, float, str, list,
// dict, namespace, undefined), with Python's truthiness, equality and str()/repr() so rendered
// chat prompts come out character for character as transformers' apply_chat_template renders
// them. Lists, dicts and namespaces are shared by reference, as Python objects are.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cachalot::tokenizer::jinja {

class Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python dicts

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace };

  Value() = default;  // undefined
  static Value none();
  Value(bool b) : kind_(Kind::kBool), int_(b) {}
  Value(int64_t i) : kind_(Kind::kInt), int_(i) {}
  Value(int i) : kind_(Kind::kInt), int_(i) {}
  Value(double f) : kind_(Kind::kFloat), float_(f) {}
  Value(std::string s) : kind_(Kind::kString), string_(std::make_shared<std::string>(std::move(s))) {}
  Value(const char* s) : Value(std::string(s)) {}
  Value(List list) : kind_(Kind::kList), list_(std::make_shared<List>(std::move(list))) {}
  static Value dict(Dict entries = {});
  static Value namespace_object(Dict entries = {});
  static Value from_json(const nlohmann::ordered_json& json);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_mapping() const { return kind_ == Kind::kDict || kind_ == Kind::kNamespace; }

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }
  double as_float() const { return kind_ == Kind::kFloat ? float_ : static_cast<double>(int_); }
  const std::string& as_string() const { return *string_; }
  List& as_list() const { return *list_; }
  Dict& as_dict() const { return *dict_; }

  // Python truthiness.
  bool truthy() const;
  // Member of a mapping by key (undefined if absent).
  Value get(std::string_view key) const;
  // Sets or adds a member of a mapping.
  void set(const std::string& key, Value value) const;

  // str(value) as Jinja prints it ({{ }}); undefined prints as "".
  std::string str() const;
  // repr(value), for lists and dicts printed whole.
  std::string repr() const;
  // JSON text as the tojson filter writes it (json.dumps(ensure_ascii=False), separators ", "
  // and ": ", or `indent` spaces per level when indent >= 0).
  std::string to_json_text(int indent = -1) const;
  std::string_view type_name() const;

  friend bool operator==(const Value& a, const Value& b);

 private:
  Kind kind_ = Kind::kUndefined;
  int64_t int_ = 0;
  double float_ = 0.0;
  std::shared_ptr<std::string> string_;
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
};

}  // namespace cachalot::tokenizer::jinja
