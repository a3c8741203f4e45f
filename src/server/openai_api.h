// The OpenAI-compatible request and response bodies: parsing /v1/completions and
// /v1/chat/completions requests into engine requests (every field type-checked, errors naming
// the parameter), and building the JSON of responses, stream chunks, usage and error objects.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "engine/request.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace cachalot::server {

using Json = nlohmann::ordered_json;

// An error for the client: HTTP status and OpenAI's error object fields.
struct ApiError : std::runtime_error {
  ApiError(int status_, std::string message, std::string param_ = {}, std::string code_ = {},
           std::string type_ = "invalid_request_error")
      : std::runtime_error(std::move(message)), status(status_), param(std::move(param_)), code(std::move(code_)),
        type(std::move(type_)) {}
  int status;
  std::string param, code, type;
};

Json error_body(const ApiError& e);

enum class Endpoint { kCompletions, kChat };

struct ParsedRequest {
  Endpoint endpoint;
  engine::RequestParams params;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;
};

// What the parser needs to know about the served model.
struct ModelInfo {
  std::string name;
  int64_t context = 0;  // max_position_embeddings
  const tokenizer::Tokenizer* tokenizer = nullptr;
  const tokenizer::ChatTemplate* chat_template = nullptr;
};

// Throws ApiError (400) for malformed JSON, wrong types, an unknown model, n != 1, a prompt that
// needs a tokenizer the model lacks, a prompt longer than the context, max_tokens out of range.
ParsedRequest parse_request(Endpoint endpoint, const std::string& body, const ModelInfo& model);

// The text a token stands for in logprobs ("token_id:N" without a tokenizer).
std::string token_text(const tokenizer::Tokenizer* tok, int32_t token);

// The error a request that did not complete gets: 500 if generation failed, 503 if it was
// cancelled (the server drained); nullopt for a normal finish.
std::optional<ApiError> finish_error(const engine::FinishEvent& finish);

// Accumulates a request's output and writes the response objects.
class ResponseBuilder {
 public:
  ResponseBuilder(const ParsedRequest& request, const ModelInfo& model);

  // Records a token for the final response; returns its logprobs object for a chunk (or null).
  Json record(const engine::TokenEvent& token);
  // One chunk for a token (streaming); records it too.
  Json token_chunk(const engine::TokenEvent& token);
  // The chunk that carries the finish reason (and the held-back text).
  Json finish_chunk(const engine::FinishEvent& finish);
  Json first_chat_chunk() const;  // {"delta": {"role": "assistant", "content": ""}}
  Json usage_chunk(const engine::FinishEvent& finish) const;
  // The whole non-streamed response.
  Json full_response(const engine::FinishEvent& finish) const;
  static Json usage(const engine::FinishEvent& finish);

 private:
  Json chunk_envelope() const;
  Json logprob_entry(const engine::TokenEvent& token) const;

  const ParsedRequest& request_;
  const ModelInfo& model_;
  std::string id_;
  int64_t created_;
  std::string text_;
  std::vector<int32_t> token_ids_;
  Json logprobs_content_ = Json::array();  // chat: entries; completions: parallel arrays below
  Json tokens_ = Json::array(), token_logprobs_ = Json::array(), top_logprobs_ = Json::array(),
       text_offset_ = Json::array();
};

}  // namespace cachalot::server
