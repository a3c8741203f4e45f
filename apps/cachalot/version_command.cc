// `cachalot version`: the build and what this machine offers the kernels.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "apps/cachalot/commands.h"
#include "core/isa.h"
#include "core/thread_pool.h"

namespace cachalot::cli {

void add_version_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "print the version, build and CPU features");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "print one JSON object");
  cmd->callback([json] {
    const CpuFeatures& f = cpu_features();
    const nlohmann::json info = {
        {"version", CACHALOT_VERSION},
        {"build_type", CACHALOT_BUILD_TYPE},
        {"compiler", fmt::format("g++ {}.{}.{}", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__)},
        {"cuda", CACHALOT_WITH_CUDA_BOOL},
        {"isa", isa_name(active_isa())},
        {"threads", ThreadPool::global().num_threads()},
        {"cpu", {{"avx2", f.avx2}, {"fma", f.fma}, {"f16c", f.f16c}, {"avx512f", f.avx512f},
                 {"avx512bw", f.avx512bw}, {"avx512vl", f.avx512vl}, {"avx512dq", f.avx512dq},
                 {"avx512vbmi", f.avx512vbmi}, {"avx512bf16", f.avx512bf16}, {"avx512fp16", f.avx512fp16}}},
    };
    if (*json) {
      fmt::print("{}\n", info.dump());
      return;
    }
    fmt::print("cachalot {} ({} build, {}, CUDA {})\n", CACHALOT_VERSION, CACHALOT_BUILD_TYPE,
               info["compiler"].get<std::string>(), CACHALOT_WITH_CUDA_BOOL ? "on" : "off");
    fmt::print("kernels: {} ISA, {} threads\n", isa_name(active_isa()), ThreadPool::global().num_threads());
    std::string features;
    for (const auto& [name, present] : info["cpu"].items())
      if (present.get<bool>()) features += (features.empty() ? "" : " ") + name;
    fmt::print("cpu features: {}\n", features.empty() ? "(baseline x86-64)" : features);
  });
}

}  // namespace cachalot::cli
