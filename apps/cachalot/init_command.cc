// `cachalot init --preset tiny|mini|v3-slice --out DIR [--seed S] [--tokenizer DIR]`: writes a
// random checkpoint in the official DeepSeek-V3 layout (no real weights can be downloaded here),
// for demos and benchmarks. --tokenizer copies a tokenizer.json / tokenizer_config.json into the
// folder and widens the vocabulary to cover it, so the random model takes text.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "apps/cachalot/commands.h"
#include "core/error.h"
#include "model/random_checkpoint.h"
#include "tokenizer/tokenizer.h"

namespace cachalot::cli {
namespace {

// DeepSeek-V3's embedding has 129280 rows for its 128815 tokens (padded to a multiple of 128);
// a tokenizer's vocabulary is padded the same way.
int64_t padded_vocab(int64_t tokens) { return (tokens + 127) / 128 * 128; }

}  // namespace

void add_init_command(CLI::App& app) {
  struct Args {
    std::string preset, out, tokenizer_dir;
    uint64_t seed = 0;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("init", "write a random checkpoint in the official layout (FP8 + scale_inv)");
  cmd->add_option("--preset", args->preset, "tiny, mini or v3-slice")
      ->required()
      ->check(CLI::IsMember(model::preset_names()));
  cmd->add_option("--out", args->out, "folder to write (created if missing)")->required();
  cmd->add_option("--seed", args->seed, "random seed (default 0)");
  cmd->add_option("--tokenizer", args->tokenizer_dir,
                  "folder with tokenizer.json (+ tokenizer_config.json) to copy in; the vocabulary grows to fit it");
  cmd->callback([args] {
    namespace fs = std::filesystem;
    model::ModelConfig config = model::preset_config(args->preset);
    if (!args->tokenizer_dir.empty()) {
      // Loading it checks it is a tokenizer we can run before anything is written.
      const auto tok = tokenizer::Tokenizer::load(args->tokenizer_dir);
      config.vocab_size = std::max(config.vocab_size, padded_vocab(tok.vocab_size()));
      if (tok.bos_id()) config.bos_token_id = *tok.bos_id();
      if (tok.eos_id()) config.eos_token_id = *tok.eos_id();
    }
    const auto t0 = std::chrono::steady_clock::now();
    const model::WriteSummary s = model::write_random_checkpoint(config, args->out, args->seed);
    if (!args->tokenizer_dir.empty()) {
      for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
        const fs::path from = fs::path(args->tokenizer_dir) / name;
        std::error_code ec;
        if (fs::exists(from)) fs::copy_file(from, fs::path(args->out) / name, fs::copy_options::overwrite_existing, ec);
        if (ec) raise(ErrorKind::kIo, "cannot copy {} into {}: {}", from.string(), args->out, ec.message());
      }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("wrote {} ({} tensors, {} shards, {:.1f} MiB, vocabulary {}{}) in {:.1f} s\n", args->out, s.tensors,
               s.shards, static_cast<double>(s.bytes) / (1 << 20), config.vocab_size,
               args->tokenizer_dir.empty() ? "" : " with its tokenizer", seconds);
  });
}

}  // namespace cachalot::cli
