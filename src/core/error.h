// One error style for all of cachalot: throw cachalot::Error with a kind and a message that
// says what was wrong (naming the file, tensor or field at fault) and what to do about it.
// Front ends (CLI, HTTP server) catch Error at the edge and turn the kind into an exit code or
// status; nothing below them prints or exits.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace cachalot {

enum class ErrorKind {
  kInvalidArgument,  // the caller passed something malformed (shape, flag, request field)
  kNotFound,         // a file, tensor or field that must exist does not
  kCorruptData,      // a file exists but its contents are inconsistent or truncated
  kIo,               // the operating system refused (open, read, write, disk full)
  kUnsupported,      // valid, but not something this build can do
  kResourceExhausted,// out of memory, KV blocks, queue slots
  kTimeout,          // a peer or an operation did not answer in time
  kInternal,         // a broken invariant inside cachalot: a bug
};

std::string_view error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message) : std::runtime_error(std::move(message)), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

template <typename... Args>
[[noreturn]] void raise(ErrorKind kind, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(kind, fmt::format(format, std::forward<Args>(args)...));
}

// errno-based failures: appends strerror(errno_value) to the message.
[[noreturn]] void raise_errno(int errno_value, std::string_view message);

}  // namespace cachalot

// Argument checks: CACHALOT_CHECK_ARG(rows > 0, "gemm: M must be positive, got {}", rows);
#define CACHALOT_CHECK_ARG(cond, ...)                                            \
  do {                                                                           \
    if (!(cond)) ::cachalot::raise(::cachalot::ErrorKind::kInvalidArgument, __VA_ARGS__); \
  } while (0)

// Internal invariants: a failure is a bug in cachalot, reported with the source location.
#define CACHALOT_ASSERT(cond)                                                                 \
  do {                                                                                        \
    if (!(cond))                                                                              \
      ::cachalot::raise(::cachalot::ErrorKind::kInternal, "internal error: {} failed at {}:{}", \
                        #cond, __FILE__, __LINE__);                                           \
  } while (0)
