// One sequence through the model for the CLI: prefill the prompt, then sample and decode token
// by token through a paged KV cache of its own, handing each new token to a callback (the
// server's engine batches many sequences instead; this is the single-user path).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "model/model.h"
#include "model/sampler.h"

namespace cachalot::cli {

struct GenerationOptions {
  int64_t max_tokens = 16;
  model::SamplingParams sampling;
  bool ignore_eos = false;
  bool prompt_logits = false;  // keep the logits of every prompt position
};

struct Generation {
  std::vector<int32_t> output;                    // generated ids (the EOS included if reached)
  std::vector<std::vector<float>> prompt_logits;  // [prompt position][vocab] when asked for
  double prefill_seconds = 0, decode_seconds = 0;
};

// Throws Error(kInvalidArgument) for an empty prompt, ids outside the vocabulary, or a prompt
// plus max_tokens longer than the model's context.
Generation generate(const model::Model& m, std::span<const int32_t> prompt, const GenerationOptions& options,
                    const std::function<void(int32_t)>& on_token = {});

}  // namespace cachalot::cli
