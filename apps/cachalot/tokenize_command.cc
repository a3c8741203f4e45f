// `cachalot tokenize --model DIR [TEXT] [--json] [--add-special-tokens]`: the token ids and pieces
// of TEXT (or of standard input) under the model's tokenizer.json.
#include <fmt/format.h>

#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/cachalot/commands.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace cachalot::cli {
namespace {

// A token's bytes, JSON-quoted so spaces and newlines are visible; bytes that are only part of
// a character (byte-level tokens split characters) are shown as \xNN.
std::string quoted_bytes(const std::string& bytes) {
  std::string text;
  for (std::size_t pos = 0; pos < bytes.size();) {
    const std::size_t len = tokenizer::utf8::sequence_length(bytes, pos);
    if (len == 0) {
      text += fmt::format("\\x{:02X}", static_cast<unsigned char>(bytes[pos++]));
    } else {
      const std::string quoted = nlohmann::json(bytes.substr(pos, len)).dump(-1, ' ', false);
      text += quoted.substr(1, quoted.size() - 2);
      pos += len;
    }
  }
  return "\"" + text + "\"";
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  struct Args {
    std::string model_dir, text;
    bool json = false, add_special = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("tokenize", "print the token ids and pieces of a text");
  cmd->add_option("--model", args->model_dir, "model folder with tokenizer.json")->required();
  cmd->add_option("text", args->text, "text to tokenize (default: standard input)");
  cmd->add_flag("--json", args->json, R"(print {"ids": [...], "pieces": [...]})");
  cmd->add_flag("--add-special-tokens", args->add_special, "add BOS/EOS as tokenizer_config.json asks");
  cmd->callback([args, cmd] {
    const auto tok = tokenizer::Tokenizer::load(args->model_dir);
    std::string text = args->text;
    if (cmd->count("text") == 0) text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    const std::vector<int32_t> ids = tok.encode(text, args->add_special);
    if (args->json) {
      nlohmann::json pieces = nlohmann::json::array();
      for (int32_t id : ids) pieces.push_back(tok.piece(id));
      fmt::print("{}\n", nlohmann::json{{"ids", ids}, {"pieces", pieces}}.dump());
      return;
    }
    // One token per line: id, the piece as written in tokenizer.json, and the text it stands for.
    for (int32_t id : ids) fmt::print("{:>7}  {:<24}  {}\n", id, tok.piece(id), quoted_bytes(tok.token_bytes(id)));
    fmt::print("{} tokens, {} bytes\n", ids.size(), text.size());
  });
}

}  // namespace cachalot::cli
