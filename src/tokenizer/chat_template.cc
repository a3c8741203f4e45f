#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace cachalot::tokenizer {
namespace {

using nlohmann::ordered_json;

ordered_json normalize_message(const ordered_json& message, std::size_t index) {
  if (!message.is_object()) raise(ErrorKind::kInvalidArgument, "messages[{}] must be an object", index);
  const auto role = message.find("role");
  if (role == message.end() || !role->is_string()) {
    raise(ErrorKind::kInvalidArgument, "messages[{}].role must be a string", index);
  }
  ordered_json out = message;
  const auto content = message.find("content");
  if (content == message.end()) {
    out["content"] = nullptr;
  } else if (content->is_array()) {
    // OpenAI's content parts: only text parts can go into a text prompt.
    std::string text;
    for (const auto& part : *content) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string()) {
        raise(ErrorKind::kInvalidArgument, "messages[{}].content: only {{\"type\": \"text\", \"text\": ...}} parts are supported",
              index);
      }
      text += part["text"].get<std::string>();
    }
    out["content"] = text;
  } else if (!content->is_string() && !content->is_null()) {
    raise(ErrorKind::kInvalidArgument, "messages[{}].content must be a string, null or a list of text parts", index);
  }
  return out;
}

}  // namespace

ChatTemplate::ChatTemplate(std::string_view source, std::string bos_token, std::string eos_token)
    : template_(source), bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)) {}

ChatTemplate ChatTemplate::from_tokenizer(const Tokenizer& tokenizer) {
  if (tokenizer.chat_template().empty()) {
    raise(ErrorKind::kNotFound, "the model's tokenizer_config.json has no chat_template; send a plain prompt instead");
  }
  return ChatTemplate(tokenizer.chat_template(), tokenizer.bos_token(), tokenizer.eos_token());
}

std::string ChatTemplate::render(const ordered_json& messages, bool add_generation_prompt, const ordered_json& extra) const {
  if (!messages.is_array()) raise(ErrorKind::kInvalidArgument, "messages must be a list");
  ordered_json context = extra.is_object() ? extra : ordered_json::object();
  ordered_json normalized = ordered_json::array();
  for (std::size_t i = 0; i < messages.size(); ++i) normalized.push_back(normalize_message(messages[i], i));
  context["messages"] = std::move(normalized);
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = bos_token_;
  context["eos_token"] = eos_token_;
  return template_.render(context);
}

}  // namespace cachalot::tokenizer
