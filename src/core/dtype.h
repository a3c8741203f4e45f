// Element types of tensors, with their sizes and their names in safetensors headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace cachalot {

enum class DType : uint8_t {
  kF64, kF32, kF16, kBF16, kF8E4M3, kF8E5M2,
  kI64, kI32, kI16, kI8, kU8, kBool,
};

size_t dtype_size(DType dtype);
// Name as safetensors writes it: "F32", "BF16", "F8_E4M3", "I64", "BOOL", ...
std::string_view dtype_name(DType dtype);
std::optional<DType> dtype_from_name(std::string_view name);

}  // namespace cachalot
