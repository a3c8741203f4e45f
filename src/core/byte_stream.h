// Packing trivially copyable values and arrays into a byte buffer and reading them back, for
// messages between our own processes (same build, same machine byte order): no schema, no
// versioning. A reader that runs past the end raises Error(kInternal) instead of reading junk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace cachalot {

class ByteWriter {
 public:
  template <typename T> void put(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    append(&value, sizeof(T));
  }
  // The element count, then the elements.
  template <typename T> void put_array(std::span<const T> values) {
    static_assert(std::is_trivially_copyable_v<T>);
    put<uint64_t>(values.size());
    append(values.data(), values.size_bytes());
  }
  std::vector<std::byte>& bytes() { return bytes_; }

 private:
  void append(const void* p, size_t n) {
    const size_t at = bytes_.size();
    bytes_.resize(at + n);
    if (n > 0) std::memcpy(bytes_.data() + at, p, n);
  }
  std::vector<std::byte> bytes_;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> bytes) : bytes_(bytes) {}

  template <typename T> T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    std::memcpy(&value, take(sizeof(T)), sizeof(T));
    return value;
  }
  template <typename T> std::vector<T> get_array() {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto n = get<uint64_t>();
    if (n > (bytes_.size() - pos_) / sizeof(T))
      raise(ErrorKind::kInternal, "malformed message: an array of {} elements in {} bytes", n, bytes_.size() - pos_);
    std::vector<T> values(n);
    if (n > 0) std::memcpy(values.data(), take(n * sizeof(T)), n * sizeof(T));
    return values;
  }
  bool done() const { return pos_ == bytes_.size(); }

 private:
  const std::byte* take(size_t n) {
    if (n > bytes_.size() - pos_)
      raise(ErrorKind::kInternal, "malformed message: {} bytes wanted at {} of {}", n, pos_, bytes_.size());
    const std::byte* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::span<const std::byte> bytes_;
  size_t pos_ = 0;
};

}  // namespace cachalot
