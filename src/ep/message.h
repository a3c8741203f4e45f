// The wire format of dispatch and combine messages: a 64-byte header, then sections (arrays)
// each starting on a 64-byte boundary. Sender and receiver compute the same MessageLayout from
// the header's row count and the operation's shape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <vector>

#include "core/error.h"

namespace cachalot::ep {

enum class MessageStatus : uint32_t { kOk = 0, kOverflow = 1 };

struct alignas(64) MessageHeader {
  MessageStatus status = MessageStatus::kOk;
  uint32_t rows = 0;
  // With kOverflow: the size the largest message of the sender needed. In a byte message
  // (Buffer::exchange): the payload's size.
  uint64_t needed_bytes = 0;
  uint64_t region_bytes = 0;  // ... and what it had
};
static_assert(sizeof(MessageHeader) == 64);

class MessageLayout {
 public:
  MessageLayout(std::initializer_list<size_t> section_bytes) {
    size_t pos = sizeof(MessageHeader);
    for (const size_t b : section_bytes) {
      offsets_.push_back(pos);
      pos += (b + 63) / 64 * 64;
    }
    total_ = pos;
  }
  size_t offset(size_t section) const { return offsets_[section]; }
  size_t total() const { return total_; }

  template <typename T> T* section(std::span<std::byte> message, size_t i) const {
    return reinterpret_cast<T*>(message.data() + offsets_[i]);
  }
  template <typename T> const T* section(std::span<const std::byte> message, size_t i) const {
    return reinterpret_cast<const T*>(message.data() + offsets_[i]);
  }

 private:
  std::vector<size_t> offsets_;
  size_t total_ = 0;
};

inline MessageHeader read_header(std::span<const std::byte> message) {
  MessageHeader h;
  CACHALOT_ASSERT(message.size() >= sizeof(h));
  std::memcpy(&h, message.data(), sizeof(h));
  return h;
}

inline void write_header(std::span<std::byte> message, const MessageHeader& h) {
  CACHALOT_ASSERT(message.size() >= sizeof(h));
  std::memcpy(message.data(), &h, sizeof(h));
}

}  // namespace cachalot::ep
