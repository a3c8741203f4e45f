// `cachalot inspect DIR`: what a checkpoint folder holds: its config.json and every tensor with
// dtype, shape, bytes and shard. Opening validates every shard's header, so a truncated or
// corrupt file fails here with its name.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
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

// "model.layers.2.x" before "model.layers.10.x": runs of digits compare as numbers.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const std::string_view da(a.data() + i, ie - i), db(b.data() + j, je - j);
      const auto strip = [](std::string_view d) { return d.substr(std::min(d.find_first_not_of('0'), d.size())); };
      const std::string_view na = strip(da), nb = strip(db);
      if (na.size() != nb.size()) return na.size() < nb.size();
      if (na != nb) return na < nb;
      i = ie, j = je;
      continue;
    }
    if (a[i] != b[j]) return a[i] < b[j];
    ++i, ++j;
  }
  return a.size() - i < b.size() - j;
}

std::vector<std::string> sorted_names(const Checkpoint& ckpt) {
  std::vector<std::string> names = ckpt.tensor_names();
  std::stable_sort(names.begin(), names.end(), natural_less);
  return names;
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
  const std::vector<std::string> names = sorted_names(ckpt);
  for (const auto& name : names) width = std::max(width, name.size());
  fmt::print("\n{:<{}}  {:<8} {:<20} {:>12}  {}\n", "tensor", width, "dtype", "shape", "bytes", "shard");
  for (const auto& name : names) {
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
  for (const auto& name : sorted_names(ckpt)) {
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
