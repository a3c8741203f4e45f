// `cachalot generate --model DIR --prompt-ids 1,2,3 --max-tokens N [sampling] [--precision
// exact|fast] [--json [--logits]]`: one prompt through prefill, then decoding token by token
// through the paged KV cache until max_tokens or the end-of-sequence token.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>

#include "apps/cachalot/commands.h"
#include "core/error.h"
#include "model/model.h"
#include "model/sampler.h"

namespace cachalot::cli {
namespace {

struct Args {
  std::string model_dir;
  std::vector<int32_t> prompt_ids;
  int64_t max_tokens = 16;
  model::SamplingParams sampling;
  std::string precision = "fast";
  std::string kv_cache = "bf16";
  bool json = false;
  bool logits = false;
  bool ignore_eos = false;
};

void run(const Args& a) {
  model::ModelOptions options;
  options.precision = a.precision == "exact" ? model::Precision::kExact : model::Precision::kFast;
  options.kv_format = a.kv_cache == "fp8" ? mla::KvFormat::kFp8 : mla::KvFormat::kBf16;
  CACHALOT_CHECK_ARG(!a.prompt_ids.empty(), "--prompt-ids needs at least one token id");
  CACHALOT_CHECK_ARG(a.max_tokens >= 0, "--max-tokens must be >= 0, got {}", a.max_tokens);
  model::validate(a.sampling);
  if (a.logits) CACHALOT_CHECK_ARG(a.json, "--logits needs --json");
  const auto m = model::Model::load(a.model_dir, options);
  const model::ModelConfig& c = m->config();
  const int64_t prompt = static_cast<int64_t>(a.prompt_ids.size()), total = prompt + a.max_tokens;
  for (const int32_t id : a.prompt_ids)
    CACHALOT_CHECK_ARG(id >= 0 && id < c.vocab_size, "--prompt-ids: token id {} is outside the vocabulary of {}", id,
                       c.vocab_size);
  CACHALOT_CHECK_ARG(total <= c.max_position_embeddings,
                     "the prompt ({} tokens) plus --max-tokens ({}) exceeds the model's context of {} tokens", prompt,
                     a.max_tokens, c.max_position_embeddings);
  // One sequence: its blocks are simply 0..n-1.
  const int64_t blocks = (total + 63) / 64;
  model::KvCache cache = m->make_kv_cache(blocks);
  std::vector<int32_t> table(static_cast<size_t>(blocks));
  std::iota(table.begin(), table.end(), 0);

  model::Sampler sampler(a.sampling);
  const auto t0 = std::chrono::steady_clock::now();
  const model::SequenceStep first{a.prompt_ids, 0, table};
  model::ForwardOutput out = m->forward({&first, 1}, cache, {.all_logits = a.logits});
  const auto t1 = std::chrono::steady_clock::now();
  nlohmann::json prompt_logits = nlohmann::json::array();
  if (a.logits)
    for (int64_t r = 0; r < prompt; ++r)
      prompt_logits.push_back(std::vector<float>(out.logits.data<float>() + r * c.vocab_size,
                                                 out.logits.data<float>() + (r + 1) * c.vocab_size));
  std::vector<int32_t> generated;
  const float* last = out.logits.data<float>() + (out.logits.size(0) - 1) * c.vocab_size;
  while (static_cast<int64_t>(generated.size()) < a.max_tokens) {
    const int32_t token = sampler.sample(last, c.vocab_size);
    generated.push_back(token);
    if (!a.json) {
      fmt::print("{}{}", generated.size() == 1 ? "" : " ", token);
      std::fflush(stdout);
    }
    if (!a.ignore_eos && c.eos_token_id && token == *c.eos_token_id) break;
    if (static_cast<int64_t>(generated.size()) == a.max_tokens) break;
    const model::SequenceStep step{{&generated.back(), 1}, prompt + static_cast<int64_t>(generated.size()) - 1, table};
    out = m->forward({&step, 1}, cache);
    last = out.logits.data<float>();
  }
  const auto t2 = std::chrono::steady_clock::now();
  if (a.json) {
    nlohmann::json j = {{"prompt_ids", a.prompt_ids}, {"output_ids", generated}, {"text", ""}};
    if (a.logits) j["prompt_logits"] = std::move(prompt_logits);
    fmt::print("{}\n", j.dump());
  } else {
    const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
    const double decode_s = std::chrono::duration<double>(t2 - t1).count();
    fmt::print("\n");
    std::fflush(stdout);
    std::fprintf(stderr, "prefill %lld tokens in %.3f s (%.1f tokens/s); decoded %zu tokens in %.3f s (%.1f tokens/s)\n",
                 static_cast<long long>(prompt), prefill_s, prompt / prefill_s, generated.size(), decode_s,
                 generated.size() > 1 ? (generated.size() - 1) / decode_s : 0.0);
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("generate", "run a prompt through the model and generate tokens");
  cmd->add_option("--model", args->model_dir, "model folder (config.json + safetensors)")->required();
  cmd->add_option("--prompt-ids", args->prompt_ids, "prompt token ids, comma-separated")->required()->delimiter(',');
  cmd->add_option("--max-tokens", args->max_tokens, "tokens to generate (default 16)");
  cmd->add_option("--temperature", args->sampling.temperature, "0 (default) is greedy");
  cmd->add_option("--top-p", args->sampling.top_p, "nucleus sampling mass in (0, 1] (default 1)");
  cmd->add_option("--top-k", args->sampling.top_k, "sample among the k most likely tokens (0: all)");
  cmd->add_option("--seed", args->sampling.seed, "sampling seed (default 0)");
  cmd->add_option("--precision", args->precision, "fast (default: FP8 GEMMs, BF16 activations) or exact (FP32)")
      ->check(CLI::IsMember({"fast", "exact"}));
  cmd->add_option("--kv-cache", args->kv_cache, "KV cache format in fast mode: bf16 (default) or fp8")
      ->check(CLI::IsMember({"bf16", "fp8"}));
  cmd->add_flag("--ignore-eos", args->ignore_eos, "keep generating past the end-of-sequence token");
  cmd->add_flag("--json", args->json, "print one JSON object: prompt_ids, output_ids, text");
  cmd->add_flag("--logits", args->logits, "with --json: add prompt_logits, one row per prompt position");
  cmd->callback([args] { run(*args); });
}

}  // namespace cachalot::cli
