// The flags every command that runs the model takes (--precision, --kv-cache, --ep,
// --ep-overlap), and the ModelOptions they stand for.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "model/model.h"

namespace cachalot::cli {

struct ModelFlags {
  std::string precision = "fast";
  std::string kv_cache = "bf16";
  int ep = 1;
  std::string ep_overlap = "off";

  model::ModelOptions options() const {
    model::ModelOptions o;
    o.precision = precision == "exact" ? model::Precision::kExact : model::Precision::kFast;
    o.kv_format = kv_cache == "fp8" ? mla::KvFormat::kFp8 : mla::KvFormat::kBf16;
    o.ep_ranks = ep;
    o.ep_overlap = ep_overlap == "on";
    return o;
  }
};

inline void add_model_flags(CLI::App* cmd, ModelFlags& flags) {
  cmd->add_option("--precision", flags.precision, "fast (default: FP8 GEMMs, BF16 activations) or exact (FP32)")
      ->check(CLI::IsMember({"fast", "exact"}));
  cmd->add_option("--kv-cache", flags.kv_cache, "KV cache format in fast mode: bf16 (default) or fp8")
      ->check(CLI::IsMember({"bf16", "fp8"}));
  cmd->add_option("--ep", flags.ep,
                  "expert parallelism over N ranks (threads of this process): data-parallel attention, routed experts "
                  "split over the ranks, dispatch/combine between them (default 1: off)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--ep-overlap", flags.ep_overlap,
                  "with --ep: two micro-batches per rank so one's dispatch/combine overlaps the other's compute (on, off: the default, as it measured slower on few cores)")
      ->check(CLI::IsMember({"on", "off"}));
}

}  // namespace cachalot::cli
