// safetensors: the checkpoint format of Hugging Face models (and so of DeepSeek-V3's official
// release). A file is an 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the
// tensor bytes, offsets relative to the end of the header.
//
// Files are mmap'd and tensors are views into the mapping (no copy). Opening validates the
// whole header before anything is used: length, JSON, dtypes, shapes vs byte sizes, offsets
// inside the file, no overlaps or holes. A truncated or corrupt file gives an Error naming the
// file and the tensor at fault, never an out-of-bounds read.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/file_io.h"
#include "core/tensor.h"

namespace cachalot {

struct TensorInfo {
  std::string name;
  DType dtype;
  Dims shape;
  uint64_t data_offset;  // from the start of the file
  uint64_t nbytes;
};

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint64_t file_size() const { return file_->size(); }
  // In the order of their data in the file.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  // A read-only view into the mapping (an aligned copy if the file misaligns the tensor's
  // data for its element size); throws kNotFound naming the file.
  Tensor tensor(std::string_view name) const;
  Tensor tensor(const TensorInfo& info) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint folder: model.safetensors.index.json with its shards, or a single
// model.safetensors; a path to one .safetensors file works too.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& path);

  const std::string& directory() const { return directory_; }
  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  std::vector<std::string> tensor_names() const;  // sorted
  size_t tensor_count() const { return location_.size(); }
  bool contains(std::string_view name) const;
  const TensorInfo& info(std::string_view name) const;
  const SafetensorsFile& shard_of(std::string_view name) const;
  Tensor tensor(std::string_view name) const;
  uint64_t total_bytes() const;

 private:
  struct Location {
    size_t shard;
    size_t tensor;
  };
  const Location& locate(std::string_view name) const;

  std::string directory_;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, Location, std::less<>> location_;
};

// Writes tensors (any strides; written contiguous), largest element size first, with the
// header padded to a multiple of 8 bytes: every tensor's data is aligned to its element size.
class SafetensorsWriter {
 public:
  void add(std::string name, Tensor tensor);
  void set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }
  // Writes atomically (temporary file + rename); returns the bytes written.
  uint64_t write(const std::string& path) const;

 private:
  std::vector<std::pair<std::string, Tensor>> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes model.safetensors.index.json for shards already written into `directory`.
void write_checkpoint_index(const std::string& directory,
                            const std::map<std::string, std::string>& weight_map,
                            uint64_t total_size);

}  // namespace cachalot
