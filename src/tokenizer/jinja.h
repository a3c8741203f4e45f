// A Jinja template engine for chat templates: the subset of Jinja2 that model chat templates use
// (if/elif/else, for with loop variables and else, set and namespace(), break/continue,
// expressions with Python semantics, the common filters, tests and string/dict methods,
// raise_exception), rendered the way transformers' apply_chat_template renders (trim_blocks,
// lstrip_blocks). No C++ Jinja engine is packaged in Debian; anything outside the subset fails
// at parse time with Error(kUnsupported) naming the construct and its line.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cachalot::tokenizer::jinja {

struct Node;

class Template {
 public:
  explicit Template(std::string_view source);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with the JSON object's members as variables. Errors raised by the template
  // (raise_exception) or by a type mismatch are Error(kInvalidArgument) with the line.
  std::string render(const nlohmann::ordered_json& context) const;

 private:
  std::unique_ptr<std::vector<std::unique_ptr<Node>>> body_;
};

}  // namespace cachalot::tokenizer::jinja
