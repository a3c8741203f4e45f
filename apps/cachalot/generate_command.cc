// `cachalot generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3 | --chat) [--max-tokens N]
// [sampling] [--precision exact|fast] [--json [--logits]]`: one prompt through prefill and
// decoding, printing text as it is generated when the model folder has a tokenizer (token ids
// otherwise); --chat is an interactive conversation through the model's chat template.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "apps/cachalot/commands.h"
#include "apps/cachalot/generation.h"
#include "apps/cachalot/model_flags.h"
#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace cachalot::cli {
namespace {

struct Args {
  std::string model_dir;
  std::vector<int32_t> prompt_ids;
  std::string prompt_text, system_prompt;
  bool chat = false;
  GenerationOptions generation;
  ModelFlags model;
  bool json = false;
};

std::optional<tokenizer::Tokenizer> load_tokenizer(const Args& a, bool required) {
  if (tokenizer::Tokenizer::present(a.model_dir)) return tokenizer::Tokenizer::load(a.model_dir);
  if (required) {
    raise(ErrorKind::kNotFound,
          "{} has no tokenizer.json, so text prompts cannot be encoded; pass --prompt-ids, or copy the "
          "checkpoint's tokenizer.json and tokenizer_config.json into the folder",
          a.model_dir);
  }
  return std::nullopt;
}

void print_timing(std::size_t prompt, const Generation& g) {
  std::fprintf(stderr, "prefill %zu tokens in %.3f s (%.1f tokens/s); decoded %zu tokens in %.3f s (%.1f tokens/s)\n",
               prompt, g.prefill_seconds, prompt / g.prefill_seconds, g.output.size(), g.decode_seconds,
               g.output.size() > 1 ? (g.output.size() - 1) / g.decode_seconds : 0.0);
}

void run_once(const Args& a, const model::Model& m) {
  const bool text_prompt = !a.prompt_text.empty();
  const auto tok = load_tokenizer(a, text_prompt);
  const std::vector<int32_t> prompt = text_prompt ? tok->encode(a.prompt_text, /*add_special_tokens=*/true) : a.prompt_ids;
  // Text as it is decoded (whole UTF-8; specials and ids the tokenizer lacks leave none): printed
  // as it comes, or collected for --json.
  std::optional<tokenizer::StreamDecoder> stream;
  if (tok) stream.emplace(*tok);
  std::string text;
  auto emit = [&](const std::string& delta) {
    text += delta;
    if (!a.json) fmt::print("{}", delta);
  };
  bool first = true;
  const Generation g = generate(m, prompt, a.generation, [&](int32_t token) {
    if (stream) emit(stream->push(token));
    else if (!a.json) fmt::print("{}{}", first ? "" : " ", token);
    first = false;
    std::fflush(stdout);
  });
  if (stream) emit(stream->finish());
  if (a.json) {
    nlohmann::json j = {{"prompt_ids", prompt}, {"output_ids", g.output}, {"text", text}};
    if (a.generation.prompt_logits) j["prompt_logits"] = g.prompt_logits;
    fmt::print("{}\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return;
  }
  fmt::print("\n");
  std::fflush(stdout);
  print_timing(prompt.size(), g);
}

// The conversation loop: each line the user types becomes a user message; the whole history is
// rendered through the chat template and the reply streams out as it is decoded. "/reset"
// clears the history, "/exit" (or end of input) quits.
void run_chat(const Args& a, const model::Model& m) {
  const auto tok = load_tokenizer(a, true);
  const auto chat = tokenizer::ChatTemplate::from_tokenizer(*tok);
  const bool interactive = isatty(STDIN_FILENO);
  nlohmann::ordered_json history = nlohmann::ordered_json::array();
  auto reset = [&] {
    history = nlohmann::ordered_json::array();
    if (!a.system_prompt.empty()) history.push_back({{"role", "system"}, {"content", a.system_prompt}});
  };
  reset();
  if (interactive) std::fprintf(stderr, "chat with %s (/reset clears the history, /exit quits)\n", a.model_dir.c_str());
  std::string line;
  while (true) {
    if (interactive) std::fprintf(stderr, "you> ");
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line == "/reset") {
      reset();
      continue;
    }
    if (line.empty()) continue;
    history.push_back({{"role", "user"}, {"content", line}});
    try {
      const std::vector<int32_t> prompt = tok->encode(chat.render(history, /*add_generation_prompt=*/true));
      tokenizer::StreamDecoder stream(*tok);
      std::string reply;
      const Generation g = generate(m, prompt, a.generation, [&](int32_t token) {
        const std::string delta = stream.push(token);
        reply += delta;
        fmt::print("{}", delta);
        std::fflush(stdout);
      });
      const std::string rest = stream.finish();
      reply += rest;
      fmt::print("{}\n", rest);
      std::fflush(stdout);
      history.push_back({{"role", "assistant"}, {"content", reply}});
      if (interactive) print_timing(prompt.size(), g);
    } catch (const Error& e) {
      // A turn that cannot run (the history outgrew the context, ...) leaves the session usable.
      history.erase(history.end() - 1);
      std::fprintf(stderr, "cachalot: error: %s\n", e.what());
    }
  }
}

void run(const Args& a) {
  const int sources = (a.prompt_ids.empty() ? 0 : 1) + (a.prompt_text.empty() ? 0 : 1) + (a.chat ? 1 : 0);
  CACHALOT_CHECK_ARG(sources == 1, "give exactly one of --prompt TEXT, --prompt-ids IDS or --chat");
  CACHALOT_CHECK_ARG(!a.generation.prompt_logits || a.json, "--logits needs --json");
  CACHALOT_CHECK_ARG(!a.chat || !a.json, "--chat prints text; it cannot be combined with --json");
  model::validate(a.generation.sampling);
  run_as_ep_leader(a.model, a.model_dir, [&](const model::ModelOptions& options) {
    const auto m = model::Model::load(a.model_dir, options);
    if (a.chat) run_chat(a, *m);
    else run_once(a, *m);
  });
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<Args>();
  GenerationOptions& g = args->generation;
  auto* cmd = app.add_subcommand("generate", "run a prompt through the model and generate text");
  cmd->add_option("--model", args->model_dir, "model folder (config.json + safetensors [+ tokenizer.json])")->required();
  cmd->add_option("--prompt", args->prompt_text, "prompt text (needs tokenizer.json in the model folder)");
  cmd->add_option("--prompt-ids", args->prompt_ids, "prompt token ids, comma-separated")->delimiter(',');
  cmd->add_flag("--chat", args->chat, "interactive conversation through the model's chat template");
  cmd->add_option("--system", args->system_prompt, "with --chat: a system prompt");
  cmd->add_option("--max-tokens", g.max_tokens, "tokens to generate per reply (default 16)");
  cmd->add_option("--temperature", g.sampling.temperature, "0 (default) is greedy");
  cmd->add_option("--top-p", g.sampling.top_p, "nucleus sampling mass in (0, 1] (default 1)");
  cmd->add_option("--top-k", g.sampling.top_k, "sample among the k most likely tokens (0: all)");
  cmd->add_option("--seed", g.sampling.seed, "sampling seed (default 0)");
  add_model_flags(cmd, args->model);
  cmd->add_flag("--ignore-eos", g.ignore_eos, "keep generating past the end-of-sequence token");
  cmd->add_flag("--json", args->json, "print one JSON object: prompt_ids, output_ids, text");
  cmd->add_flag("--logits", g.prompt_logits, "with --json: add prompt_logits, one row per prompt position");
  cmd->callback([args] { run(*args); });
}

}  // namespace cachalot::cli
