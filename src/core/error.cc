#include "core/error.h"

#include <cstring>

namespace cachalot {

std::string_view error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidArgument: return "invalid argument";
    case ErrorKind::kNotFound: return "not found";
    case ErrorKind::kCorruptData: return "corrupt data";
    case ErrorKind::kIo: return "i/o error";
    case ErrorKind::kUnsupported: return "unsupported";
    case ErrorKind::kResourceExhausted: return "resource exhausted";
    case ErrorKind::kTimeout: return "timeout";
    case ErrorKind::kInternal: return "internal error";
  }
  return "unknown error";
}

void raise_errno(int errno_value, std::string_view message) {
  const ErrorKind kind = errno_value == ENOENT ? ErrorKind::kNotFound
                         : errno_value == ENOMEM ? ErrorKind::kResourceExhausted
                                                 : ErrorKind::kIo;
  throw Error(kind, fmt::format("{}: {}", message, std::strerror(errno_value)));
}

}  // namespace cachalot
