// The flags every command that runs the model takes (--precision, --kv-cache), and the
// ModelOptions they stand for.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "model/model.h"

namespace cachalot::cli {

struct ModelFlags {
  std::string precision = "fast";
  std::string kv_cache = "bf16";

  model::ModelOptions options() const {
    model::ModelOptions o;
    o.precision = precision == "exact" ? model::Precision::kExact : model::Precision::kFast;
    o.kv_format = kv_cache == "fp8" ? mla::KvFormat::kFp8 : mla::KvFormat::kBf16;
    return o;
  }
};

inline void add_model_flags(CLI::App* cmd, ModelFlags& flags) {
  cmd->add_option("--precision", flags.precision, "fast (default: FP8 GEMMs, BF16 activations) or exact (FP32)")
      ->check(CLI::IsMember({"fast", "exact"}));
  cmd->add_option("--kv-cache", flags.kv_cache, "KV cache format in fast mode: bf16 (default) or fp8")
      ->check(CLI::IsMember({"bf16", "fp8"}));
}

}  // namespace cachalot::cli
