// Jinja's filters, tests, global functions and the methods of strings, lists and dicts, for the
// interpreter (internal to the Jinja subset). Each throws std::invalid_argument with a message on
// bad arguments; the interpreter adds the line and turns it into cachalot::Error.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace cachalot::tokenizer::jinja {

using Keywords = std::vector<std::pair<std::string, Value>>;

// Each returns false (leaving *out untouched) when the name is not a known one.
bool apply_filter(std::string_view name, const Value& subject, const std::vector<Value>& args,
                  const Keywords& keywords, Value* out);
bool apply_test(std::string_view name, const Value& subject, const std::vector<Value>& args, bool* out);
bool call_method(const Value& object, std::string_view name, const std::vector<Value>& args,
                 const Keywords& keywords, Value* out);
bool call_global(std::string_view name, const std::vector<Value>& args, const Keywords& keywords, Value* out);

// Python's len(), iteration (a dict yields its keys, a string its characters) and indexing with
// negative indices (undefined when out of range).
int64_t length_of(const Value& v);
std::vector<Value> iterate(const Value& v);
Value index_of(const Value& container, const Value& index);
Value slice_of(const Value& container, const Value* start, const Value* stop, const Value* step);

}  // namespace cachalot::tokenizer::jinja
