#include "server/openai_api.h"

#include <chrono>
#include <random>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace cachalot::server {
namespace {

[[noreturn]] void bad(std::string message, std::string param = {}, std::string code = {}) {
  throw ApiError(400, std::move(message), std::move(param), std::move(code));
}

// Typed optional fields: absent or null gives nullopt; a wrong type is an error naming the field.
std::optional<bool> get_bool(const Json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) bad(fmt::format("'{}' must be a boolean", key), key);
  return it->get<bool>();
}

std::optional<int64_t> get_int(const Json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) bad(fmt::format("'{}' must be an integer", key), key);
  return it->get<int64_t>();
}

std::optional<double> get_number(const Json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) bad(fmt::format("'{}' must be a number", key), key);
  return it->get<double>();
}

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{}-{:016x}", prefix, rng());
}

std::vector<int32_t> encode_or_fail(const ModelInfo& model, const std::string& text, bool add_special) {
  if (!model.tokenizer) {
    bad("this model folder has no tokenizer.json, so text cannot be encoded; send the prompt as a list of token ids",
        "prompt", "tokenizer_missing");
  }
  return model.tokenizer->encode(text, add_special);
}

std::vector<int32_t> parse_prompt(const Json& body, const ModelInfo& model) {
  const auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) bad("'prompt' is required", "prompt");
  const Json* prompt = &*it;
  // A batch of one is accepted: ["text"] or [[1, 2, 3]].
  if (prompt->is_array() && prompt->size() == 1 && ((*prompt)[0].is_string() || (*prompt)[0].is_array())) {
    prompt = &(*prompt)[0];
  }
  if (prompt->is_string()) return encode_or_fail(model, prompt->get<std::string>(), true);
  if (prompt->is_array()) {
    std::vector<int32_t> ids;
    for (const Json& id : *prompt) {
      if (!id.is_number_integer()) {
        bad("'prompt' must be a string, a list of token ids, or a list of one of those (one prompt per request)",
            "prompt");
      }
      const int64_t v = id.get<int64_t>();
      if (v < 0 || v > INT32_MAX) bad(fmt::format("token id {} is out of range", v), "prompt");
      ids.push_back(static_cast<int32_t>(v));
    }
    return ids;
  }
  bad("'prompt' must be a string or a list of token ids", "prompt");
}

std::vector<int32_t> parse_messages(const Json& body, const ModelInfo& model) {
  const auto it = body.find("messages");
  if (it == body.end() || !it->is_array() || it->empty()) bad("'messages' must be a non-empty list", "messages");
  if (!model.chat_template) {
    bad("this model has no chat template (tokenizer.json / tokenizer_config.json); use /v1/completions", "messages",
        "chat_template_missing");
  }
  std::string text;
  try {
    Json extra = Json::object();
    if (body.contains("tools")) extra["tools"] = body["tools"];
    text = model.chat_template->render(*it, true, extra);
  } catch (const Error& e) {
    bad(e.what(), "messages");
  }
  return encode_or_fail(model, text, false);
}

std::vector<std::string> parse_stop(const Json& body) {
  const auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return {};
  if (it->is_string()) return {it->get<std::string>()};
  if (it->is_array() && it->size() <= 16) {
    std::vector<std::string> stops;
    for (const Json& s : *it) {
      if (!s.is_string()) bad("'stop' must be a string or a list of strings", "stop");
      stops.push_back(s.get<std::string>());
    }
    return stops;
  }
  bad("'stop' must be a string or a list of at most 16 strings", "stop");
}

}  // namespace

Json error_body(const ApiError& e) {
  return Json{{"error",
               {{"message", e.what()},
                {"type", e.type},
                {"param", e.param.empty() ? Json(nullptr) : Json(e.param)},
                {"code", e.code.empty() ? Json(nullptr) : Json(e.code)}}}};
}

ParsedRequest parse_request(Endpoint endpoint, const std::string& text, const ModelInfo& model) {
  Json body;
  try {
    body = Json::parse(text);
  } catch (const Json::exception& e) {
    bad(fmt::format("the body is not valid JSON: {}", e.what()), {}, "invalid_json");
  }
  if (!body.is_object()) bad("the body must be a JSON object");

  if (const auto it = body.find("model"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) bad("'model' must be a string", "model");
    if (it->get<std::string>() != model.name) {
      bad(fmt::format("the model '{}' does not exist; this server serves '{}'", it->get<std::string>(), model.name),
          "model", "model_not_found");
    }
  }
  ParsedRequest r;
  r.endpoint = endpoint;
  if (const auto n = get_int(body, "n"); n && *n != 1) bad("only n=1 is supported", "n");
  for (const char* penalty : {"presence_penalty", "frequency_penalty"}) {
    if (const auto v = get_number(body, penalty); v && *v != 0.0) bad(fmt::format("'{}' is not supported", penalty), penalty);
  }
  r.stream = get_bool(body, "stream").value_or(false);
  if (const auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) bad("'stream_options' must be an object", "stream_options");
    r.include_usage = get_bool(*it, "include_usage").value_or(false);
  }

  engine::RequestParams& p = r.params;
  p.prompt = endpoint == Endpoint::kChat ? parse_messages(body, model) : parse_prompt(body, model);
  if (p.prompt.empty()) bad("the prompt is empty", endpoint == Endpoint::kChat ? "messages" : "prompt");
  const auto prompt_len = static_cast<int64_t>(p.prompt.size());
  if (prompt_len >= model.context) {
    bad(fmt::format("the prompt has {} tokens; this model's context is {} tokens", prompt_len, model.context),
        endpoint == Endpoint::kChat ? "messages" : "prompt", "context_length_exceeded");
  }
  const char* max_key = endpoint == Endpoint::kChat && body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  const auto max_tokens = get_int(body, max_key);
  // OpenAI's legacy completions default to 16 tokens; chat to whatever the context leaves.
  p.max_tokens = max_tokens.value_or(endpoint == Endpoint::kChat ? model.context - prompt_len : 16);
  if (p.max_tokens < 1 || prompt_len + p.max_tokens > model.context) {
    bad(fmt::format("'{}' must be between 1 and {} (the context of {} tokens minus the prompt's {}), got {}", max_key,
                    model.context - prompt_len, model.context, prompt_len, p.max_tokens),
        max_key, "context_length_exceeded");
  }
  const double temperature = get_number(body, "temperature").value_or(1.0);
  if (temperature < 0 || temperature > 2) bad("'temperature' must be in [0, 2]", "temperature");
  p.sampling.temperature = static_cast<float>(temperature);
  const double top_p = get_number(body, "top_p").value_or(1.0);
  if (!(top_p > 0 && top_p <= 1)) bad("'top_p' must be in (0, 1]", "top_p");
  p.sampling.top_p = static_cast<float>(top_p);
  const int64_t top_k = get_int(body, "top_k").value_or(0);
  if (top_k < -1) bad("'top_k' must be >= -1 (-1 or 0: no limit)", "top_k");
  p.sampling.top_k = std::max<int64_t>(top_k, 0);
  if (const auto seed = get_int(body, "seed")) p.sampling.seed = static_cast<uint64_t>(*seed);
  else p.sampling.seed = std::random_device{}();
  p.stop = parse_stop(body);
  if (!p.stop.empty() && !model.tokenizer) bad("stop strings need the model's tokenizer.json", "stop");
  p.ignore_eos = get_bool(body, "ignore_eos").value_or(false);
  if (const auto it = body.find("stop_token_ids"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) bad("'stop_token_ids' must be a list of token ids", "stop_token_ids");
    for (const Json& id : *it) {
      if (!id.is_number_integer()) bad("'stop_token_ids' must be a list of token ids", "stop_token_ids");
      p.stop_token_ids.push_back(id.get<int32_t>());
    }
  }

  if (endpoint == Endpoint::kChat) {
    r.logprobs = get_bool(body, "logprobs").value_or(false);
    const int64_t top = get_int(body, "top_logprobs").value_or(0);
    if (top < 0 || top > 20) bad("'top_logprobs' must be in [0, 20]", "top_logprobs");
    if (top > 0 && !r.logprobs) bad("'top_logprobs' needs 'logprobs': true", "top_logprobs");
    p.top_logprobs = r.logprobs ? static_cast<int>(top) : -1;
  } else if (const auto lp = get_int(body, "logprobs")) {
    if (*lp < 0 || *lp > 5) bad("'logprobs' must be in [0, 5]", "logprobs");
    r.logprobs = true;
    p.top_logprobs = static_cast<int>(*lp);
  }
  return r;
}

std::string token_text(const tokenizer::Tokenizer* tok, int32_t token) {
  if (!tok || token >= tok->vocab_size()) return fmt::format("token_id:{}", token);
  try {
    return tokenizer::utf8::to_valid_lossy(tok->token_bytes(token));
  } catch (const Error&) {
    return fmt::format("token_id:{}", token);
  }
}

ResponseBuilder::ResponseBuilder(const ParsedRequest& request, const ModelInfo& model)
    : request_(request), model_(model),
      id_(random_id(request.endpoint == Endpoint::kChat ? "chatcmpl" : "cmpl")),
      created_(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()) {}

Json ResponseBuilder::chunk_envelope() const {
  return Json{{"id", id_},
              {"object", request_.endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
              {"created", created_},
              {"model", model_.name}};
}

Json ResponseBuilder::logprob_entry(const engine::TokenEvent& t) const {
  auto bytes_of = [&](int32_t token) {
    const std::string s = token_text(model_.tokenizer, token);
    Json b = Json::array();
    for (unsigned char c : s) b.push_back(c);
    return b;
  };
  Json top = Json::array();
  for (const auto& alt : t.top) {
    top.push_back({{"token", token_text(model_.tokenizer, alt.token)}, {"logprob", alt.logprob}, {"bytes", bytes_of(alt.token)}});
  }
  return Json{{"token", token_text(model_.tokenizer, t.token)},
              {"logprob", t.logprob.value_or(0.0f)},
              {"bytes", bytes_of(t.token)},
              {"top_logprobs", top}};
}

Json ResponseBuilder::record(const engine::TokenEvent& t) {
  token_ids_.push_back(t.token);
  Json lp = nullptr;
  if (request_.logprobs) {
    if (request_.endpoint == Endpoint::kChat) {
      Json entry = logprob_entry(t);
      logprobs_content_.push_back(entry);
      lp = Json{{"content", Json::array({entry})}};
    } else {
      Json top = Json::object();
      for (const auto& alt : t.top) top[token_text(model_.tokenizer, alt.token)] = alt.logprob;
      const std::string tok = token_text(model_.tokenizer, t.token);
      tokens_.push_back(tok);
      token_logprobs_.push_back(t.logprob.value_or(0.0f));
      top_logprobs_.push_back(top);
      text_offset_.push_back(text_.size());
      lp = Json{{"tokens", {tok}}, {"token_logprobs", {t.logprob.value_or(0.0f)}}, {"top_logprobs", {top}},
                {"text_offset", {text_.size()}}};
    }
  }
  text_ += t.text;
  return lp;
}

Json ResponseBuilder::token_chunk(const engine::TokenEvent& t) {
  Json lp = record(t);
  Json choice{{"index", 0}};
  if (request_.endpoint == Endpoint::kChat) choice["delta"] = Json{{"content", t.text}};
  else choice["text"] = t.text;
  choice["logprobs"] = std::move(lp);
  choice["finish_reason"] = nullptr;
  choice["token_ids"] = Json::array({t.token});  // extension: the ids behind the text
  Json chunk = chunk_envelope();
  chunk["choices"] = Json::array({choice});
  return chunk;
}

std::optional<ApiError> finish_error(const engine::FinishEvent& f) {
  if (f.reason == engine::FinishReason::kError) {
    return ApiError(500, "generation failed: " + f.error, {}, {}, "server_error");
  }
  if (f.reason == engine::FinishReason::kCancelled) {
    return ApiError(503, "the request was cancelled (server shutting down)", {}, {}, "server_error");
  }
  return std::nullopt;
}

Json ResponseBuilder::first_chat_chunk() const {
  Json chunk = chunk_envelope();
  chunk["choices"] = Json::array({Json{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                                       {"logprobs", nullptr}, {"finish_reason", nullptr}}});
  return chunk;
}

Json ResponseBuilder::finish_chunk(const engine::FinishEvent& f) {
  text_ += f.text;
  Json choice{{"index", 0}};
  if (request_.endpoint == Endpoint::kChat) choice["delta"] = Json{{"content", f.text}};
  else choice["text"] = f.text;
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = engine::finish_reason_name(f.reason);
  Json chunk = chunk_envelope();
  chunk["choices"] = Json::array({choice});
  return chunk;
}

Json ResponseBuilder::usage(const engine::FinishEvent& f) {
  return Json{{"prompt_tokens", f.prompt_tokens},
              {"completion_tokens", f.completion_tokens},
              {"total_tokens", f.prompt_tokens + f.completion_tokens},
              {"prompt_cache_hit_tokens", f.cached_prompt_tokens},
              {"prompt_cache_miss_tokens", f.prompt_tokens - f.cached_prompt_tokens},
              {"prompt_tokens_details", {{"cached_tokens", f.cached_prompt_tokens}}}};
}

Json ResponseBuilder::usage_chunk(const engine::FinishEvent& f) const {
  Json chunk = chunk_envelope();
  chunk["choices"] = Json::array();
  chunk["usage"] = usage(f);
  return chunk;
}

Json ResponseBuilder::full_response(const engine::FinishEvent& f) const {
  const std::string text = text_ + f.text;
  Json choice{{"index", 0}};
  Json lp = nullptr;
  if (request_.logprobs) {
    lp = request_.endpoint == Endpoint::kChat
             ? Json{{"content", logprobs_content_}}
             : Json{{"tokens", tokens_}, {"token_logprobs", token_logprobs_}, {"top_logprobs", top_logprobs_},
                    {"text_offset", text_offset_}};
  }
  if (request_.endpoint == Endpoint::kChat) choice["message"] = Json{{"role", "assistant"}, {"content", text}};
  else choice["text"] = text;
  choice["logprobs"] = lp;
  choice["finish_reason"] = engine::finish_reason_name(f.reason);
  choice["token_ids"] = token_ids_;
  return Json{{"id", id_},
              {"object", request_.endpoint == Endpoint::kChat ? "chat.completion" : "text_completion"},
              {"created", created_},
              {"model", model_.name},
              {"choices", Json::array({choice})},
              {"usage", usage(f)}};
}

}  // namespace cachalot::server
