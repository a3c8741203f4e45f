#include "core/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace cachalot {
namespace {

using nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we, before allocating.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;
constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kSingleFile = "model.safetensors";

[[noreturn]] void corrupt(const std::string& path, std::string_view what) {
  raise(ErrorKind::kCorruptData, "{}: {}", path, what);
}

uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& path, std::string_view tensor) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    corrupt(path, fmt::format("tensor '{}' has a shape whose size overflows 64 bits", tensor));
  return r;
}

TensorInfo parse_entry(const std::string& path, const std::string& name, const json& entry,
                       uint64_t data_start, uint64_t data_size) {
  auto bad = [&](std::string_view what) { corrupt(path, fmt::format("tensor '{}': {}", name, what)); };
  if (!entry.is_object()) bad("header entry is not an object");
  const auto dtype_it = entry.find("dtype");
  const auto shape_it = entry.find("shape");
  const auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || !dtype_it->is_string()) bad("missing or non-string \"dtype\"");
  if (shape_it == entry.end() || !shape_it->is_array()) bad("missing or non-array \"shape\"");
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2)
    bad("\"data_offsets\" must be an array [begin, end]");

  const std::string dtype_text = dtype_it->get<std::string>();
  const auto dtype = dtype_from_name(dtype_text);
  if (!dtype) bad(fmt::format("unsupported dtype \"{}\"", dtype_text));
  if (shape_it->size() > kMaxTensorDims) bad(fmt::format("{} dimensions (max {})", shape_it->size(), kMaxTensorDims));

  std::vector<int64_t> dims;
  uint64_t numel = 1;
  for (const json& d : *shape_it) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t{1} << 62))
      bad(fmt::format("shape {} has a dimension that is not a non-negative integer", shape_it->dump()));
    dims.push_back(static_cast<int64_t>(d.get<uint64_t>()));
    numel = checked_mul(numel, d.get<uint64_t>(), path, name);
  }
  for (const json& o : *offsets_it)
    if (!o.is_number_unsigned()) bad(fmt::format("data_offsets {} are not non-negative integers", offsets_it->dump()));
  const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
  const uint64_t end = (*offsets_it)[1].get<uint64_t>();
  if (begin > end) bad(fmt::format("data_offsets [{}, {}] run backwards", begin, end));
  const uint64_t expected = checked_mul(numel, dtype_size(*dtype), path, name);
  if (end - begin != expected)
    bad(fmt::format("{}{} needs {} bytes but data_offsets [{}, {}] hold {}", dtype_text,
                    shape_it->dump(), expected, begin, end, end - begin));
  if (end > data_size)
    corrupt(path, fmt::format("truncated: tensor '{}' needs bytes [{}, {}) of the data section but "
                              "only {} are present (file is {} bytes, needs at least {})",
                              name, begin, end, data_size, data_start + data_size, data_start + end));
  return TensorInfo{name, *dtype, Dims(std::span<const int64_t>(dims)), data_start + begin, expected};
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.file_ = MappedFile::open(path);
  const uint64_t size = f.file_->size();
  if (size < 8)
    corrupt(path, fmt::format("not a safetensors file: {} bytes, shorter than the 8-byte header length", size));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | f.file_->data()[i];
  if (header_len > kMaxHeaderBytes)
    corrupt(path, fmt::format("header length {} exceeds the {}-byte limit: not a safetensors file or corrupt",
                              header_len, kMaxHeaderBytes));
  if (header_len > size - 8)
    corrupt(path, fmt::format("truncated: the header says {} bytes of JSON but only {} follow", header_len, size - 8));

  const char* header_begin = reinterpret_cast<const char*>(f.file_->data() + 8);
  json header;
  try {
    header = json::parse(header_begin, header_begin + header_len);
  } catch (const json::parse_error& e) {
    corrupt(path, fmt::format("header is not valid JSON ({})", e.what()));
  }
  if (!header.is_object()) corrupt(path, "header is not a JSON object");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) corrupt(path, "\"__metadata__\" is not an object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) corrupt(path, fmt::format("metadata \"{}\" is not a string", mk));
        f.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    f.tensors_.push_back(parse_entry(path, key, value, data_start, data_size));
  }

  // The data section must be covered exactly: no overlaps, no holes, nothing after the end.
  std::sort(f.tensors_.begin(), f.tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              return a.data_offset != b.data_offset ? a.data_offset < b.data_offset : a.nbytes < b.nbytes;
            });
  uint64_t covered = data_start;
  for (size_t i = 0; i < f.tensors_.size(); ++i) {
    const TensorInfo& t = f.tensors_[i];
    if (t.data_offset < covered)
      corrupt(path, fmt::format("tensors '{}' and '{}' overlap", f.tensors_[i - 1].name, t.name));
    if (t.data_offset > covered)
      corrupt(path, fmt::format("{} unused bytes before tensor '{}' (the data section must be fully indexed)",
                                t.data_offset - covered, t.name));
    covered = t.data_offset + t.nbytes;
    f.index_.emplace(t.name, i);
  }
  if (covered != size)
    corrupt(path, fmt::format("{} bytes after the last tensor are not indexed by the header", size - covered));
  return f;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Tensor SafetensorsFile::tensor(std::string_view name) const {
  const TensorInfo* info = find(name);
  if (info == nullptr) raise(ErrorKind::kNotFound, "{}: no tensor named '{}'", path(), name);
  return tensor(*info);
}

Tensor SafetensorsFile::tensor(const TensorInfo& info) const {
  const Tensor view = Tensor::view(file_->data() + info.data_offset, info.dtype, info.shape, file_);
  // The format does not promise alignment; typed access to a misaligned element is undefined
  // behaviour, so such a tensor is copied once into aligned memory.
  if (reinterpret_cast<uintptr_t>(view.raw_data()) % dtype_size(info.dtype) != 0) return view.clone();
  return view;
}

Checkpoint Checkpoint::open(const std::string& path) {
  namespace fs = std::filesystem;
  Checkpoint c;
  std::error_code ec;
  if (!fs::exists(path, ec)) raise(ErrorKind::kNotFound, "checkpoint {} does not exist", path);

  std::vector<std::string> shard_files;
  std::map<std::string, std::string> weight_map;  // tensor -> shard file, from the index
  if (fs::is_regular_file(path, ec)) {
    c.directory_ = fs::path(path).parent_path().string();
    shard_files.push_back(fs::path(path).filename().string());
  } else {
    c.directory_ = path;
    const fs::path index_path = fs::path(path) / kIndexFile;
    if (fs::exists(index_path, ec)) {
      const std::string index_file = index_path.string();
      json index;
      try {
        index = json::parse(read_text_file(index_file));
      } catch (const json::parse_error& e) {
        corrupt(index_file, fmt::format("not valid JSON ({})", e.what()));
      }
      if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
        corrupt(index_file, "missing the \"weight_map\" object");
      for (const auto& [tensor, file] : index["weight_map"].items()) {
        if (!file.is_string()) corrupt(index_file, fmt::format("weight_map entry '{}' is not a file name", tensor));
        const std::string name = file.get<std::string>();
        if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
          corrupt(index_file, fmt::format("weight_map entry '{}' names '{}', not a file in the folder", tensor, name));
        weight_map[tensor] = name;
        if (std::find(shard_files.begin(), shard_files.end(), name) == shard_files.end())
          shard_files.push_back(name);
      }
      std::sort(shard_files.begin(), shard_files.end());
    } else if (fs::exists(fs::path(path) / kSingleFile, ec)) {
      shard_files.push_back(kSingleFile);
    } else {
      raise(ErrorKind::kNotFound, "{} holds neither {} nor {}: not a safetensors checkpoint", path,
            kIndexFile, kSingleFile);
    }
  }

  for (const std::string& file : shard_files) {
    c.shards_.push_back(SafetensorsFile::open((fs::path(c.directory_) / file).string()));
    const SafetensorsFile& shard = c.shards_.back();
    for (size_t i = 0; i < shard.tensors().size(); ++i) {
      const std::string& name = shard.tensors()[i].name;
      const auto [it, inserted] = c.location_.emplace(name, Location{c.shards_.size() - 1, i});
      if (!inserted)
        raise(ErrorKind::kCorruptData, "tensor '{}' is in both {} and {}", name,
              c.shards_[it->second.shard].path(), shard.path());
    }
  }

  std::vector<std::string> missing;
  for (const auto& [tensor, file] : weight_map) {
    const auto it = c.location_.find(tensor);
    if (it == c.location_.end() || fs::path(c.shards_[it->second.shard].path()).filename() != file)
      missing.push_back(fmt::format("'{}' (in {})", tensor, file));
  }
  if (!missing.empty()) {
    const size_t shown = std::min<size_t>(missing.size(), 5);
    raise(ErrorKind::kCorruptData, "{}: {} tensor(s) listed in {} are missing from their shard: {}{}",
          c.directory_, missing.size(), kIndexFile,
          fmt::join(missing.begin(), missing.begin() + static_cast<long>(shown), ", "),
          missing.size() > shown ? ", ..." : "");
  }
  return c;
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(location_.size());
  for (const auto& [name, loc] : location_) names.push_back(name);
  return names;
}

bool Checkpoint::contains(std::string_view name) const { return location_.find(name) != location_.end(); }

const Checkpoint::Location& Checkpoint::locate(std::string_view name) const {
  const auto it = location_.find(name);
  if (it == location_.end()) raise(ErrorKind::kNotFound, "checkpoint {} has no tensor '{}'", directory_, name);
  return it->second;
}

const TensorInfo& Checkpoint::info(std::string_view name) const {
  const Location& loc = locate(name);
  return shards_[loc.shard].tensors()[loc.tensor];
}

const SafetensorsFile& Checkpoint::shard_of(std::string_view name) const { return shards_[locate(name).shard]; }

Tensor Checkpoint::tensor(std::string_view name) const { return shard_of(name).tensor(info(name)); }

uint64_t Checkpoint::total_bytes() const {
  uint64_t total = 0;
  for (const auto& shard : shards_)
    for (const auto& t : shard.tensors()) total += t.nbytes;
  return total;
}

void SafetensorsWriter::add(std::string name, Tensor tensor) {
  CACHALOT_CHECK_ARG(!name.empty() && name != "__metadata__", "invalid tensor name '{}'", name);
  for (const auto& [existing, t] : tensors_)
    CACHALOT_CHECK_ARG(existing != name, "tensor '{}' added twice", name);
  tensors_.emplace_back(std::move(name), std::move(tensor));
}

uint64_t SafetensorsWriter::write(const std::string& path) const {
  // Largest elements first: with the 8-byte-aligned data start, every tensor is then aligned
  // to its element size (the reference writer orders the same way).
  std::vector<const std::pair<std::string, Tensor>*> order;
  for (const auto& entry : tensors_) order.push_back(&entry);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return a->second.element_size() > b->second.element_size();
  });
  json header = json::object();
  uint64_t offset = 0;
  for (const auto* entry : order) {
    const auto& [name, t] = *entry;
    header[name] = {{"dtype", dtype_name(t.dtype())},
                    {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::string text = header.dump();
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');

  AtomicFileWriter out(path);
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  out.write(length, sizeof(length));
  out.write(text);
  for (const auto* entry : order) {
    const Tensor& t = entry->second;
    if (t.is_contiguous()) {
      out.write(t.raw_data(), t.nbytes());
    } else {
      const Tensor packed = t.clone();
      out.write(packed.raw_data(), packed.nbytes());
    }
  }
  out.commit();
  return out.bytes_written();
}

void write_checkpoint_index(const std::string& directory, const std::map<std::string, std::string>& weight_map,
                            uint64_t total_size) {
  const json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  write_text_file((std::filesystem::path(directory) / kIndexFile).string(), index.dump(2) + "\n");
}

}  // namespace cachalot
