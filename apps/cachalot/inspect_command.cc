// `cachalot inspect DIR`: what a checkpoint folder holds: its config.json and every tensor with
// dtype, shape, bytes and shard. Opening validates every shard's header, so a truncated or
// corrupt file fails here with its name.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "apps/cachalot/commands.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/safetensors.h"

namespace cachalot::cli {
namespace {

nlohmann::json read_config(const std::string& dir) {
  const auto path = std::filesystem::path(dir) / "config.json";
  if (!std::filesystem::exists(path)) return nullptr;
  try {
    return nlohmann::json::parse(read_text_file(path.string()));
  } catch (const nlohmann::json::parse_error& e) {
    raise(ErrorKind::kCorruptData, "{}: not valid JSON ({})", path.string(), e.what());
  }
}

std::string human_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.2f} {}", v, units[u]);
}

void print_text(const Checkpoint& ckpt, const nlohmann::json& config) {
  fmt::print("checkpoint {}: {} shard(s), {} tensors, {}\n", ckpt.directory(), ckpt.shards().size(),
             ckpt.tensor_count(), human_bytes(ckpt.total_bytes()));
  if (!config.is_null()) {
    fmt::print("\nconfig.json:\n");
    for (const auto& [key, value] : config.items())
      fmt::print("  {:<32} {}\n", key, value.is_string() ? value.get<std::string>() : value.dump());
  }
  std::map<std::string, std::pair<size_t, uint64_t>> by_dtype;
  size_t width = 6;
  for (const auto& name : ckpt.tensor_names()) width = std::max(width, name.size());
  fmt::print("\n{:<{}}  {:<8} {:<20} {:>12}  {}\n", "tensor", width, "dtype", "shape", "bytes", "shard");
  for (const auto& name : ckpt.tensor_names()) {
    const TensorInfo& t = ckpt.info(name);
    const std::string dtype(dtype_name(t.dtype));
    fmt::print("{:<{}}  {:<8} {:<20} {:>12}  {}\n", name, width, dtype, t.shape.to_string(), t.nbytes,
               std::filesystem::path(ckpt.shard_of(name).path()).filename().string());
    by_dtype[dtype].first += 1;
    by_dtype[dtype].second += t.nbytes;
  }
  fmt::print("\nby dtype:\n");
  for (const auto& [dtype, count_bytes] : by_dtype)
    fmt::print("  {:<8} {:>6} tensors  {}\n", dtype, count_bytes.first, human_bytes(count_bytes.second));
}

void print_json(const Checkpoint& ckpt, const nlohmann::json& config) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& name : ckpt.tensor_names()) {
    const TensorInfo& t = ckpt.info(name);
    tensors.push_back({{"name", name},
                       {"dtype", dtype_name(t.dtype)},
                       {"shape", std::vector<int64_t>(t.shape.begin(), t.shape.end())},
                       {"bytes", t.nbytes},
                       {"shard", std::filesystem::path(ckpt.shard_of(name).path()).filename().string()}});
  }
  const nlohmann::json out = {{"directory", ckpt.directory()}, {"total_bytes", ckpt.total_bytes()},
                              {"config", config}, {"tensors", tensors}};
  fmt::print("{}\n", out.dump());
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "list a checkpoint's tensors and config");
  struct Args {
    std::string dir;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("DIR", args->dir, "checkpoint folder (config.json + safetensors shards) or a .safetensors file")
      ->required();
  cmd->add_flag("--json", args->json, "print one JSON object");
  cmd->callback([args] {
    const std::string& dir = args->dir;
    const Checkpoint ckpt = Checkpoint::open(dir);
    const nlohmann::json config =
        std::filesystem::is_directory(dir) ? read_config(dir) : nlohmann::json(nullptr);
    if (args->json)
      print_json(ckpt, config);
    else
      print_text(ckpt, config);
  });
}

}  // namespace cachalot::cli
