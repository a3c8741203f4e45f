// Chat format: renders a conversation (OpenAI-style messages) into the prompt text a model was
// trained on, through the Jinja chat_template of its tokenizer_config.json.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "tokenizer/jinja.h"

namespace cachalot::tokenizer {

class Tokenizer;

class ChatTemplate {
 public:
  ChatTemplate(std::string_view source, std::string bos_token, std::string eos_token);
  // The tokenizer's template; Error(kNotFound) if tokenizer_config.json has none.
  static ChatTemplate from_tokenizer(const Tokenizer& tokenizer);

  // messages: [{"role": "system"|"user"|"assistant"|"tool", "content": string|null|[parts],
  // "tool_calls": [...]?}, ...]. Content given as OpenAI's list of {"type": "text", "text"} parts
  // is joined into one string. Malformed messages are Error(kInvalidArgument) naming the index.
  // extra: more template variables (e.g. "tools").
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

 private:
  jinja::Template template_;
  std::string bos_token_, eos_token_;
};

}  // namespace cachalot::tokenizer
