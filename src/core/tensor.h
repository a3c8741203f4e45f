// Tensor: a dtype, a shape, strides (in elements) and a pointer into storage that is either
// owned (64-byte aligned, freed with the last Tensor sharing it) or external (a view over mmap'd
// weights, kept alive by a shared owner handle). Copying a Tensor shares its storage.
//
// Element access through at<T>(i, j, ...) (read) and mutable_at<T>(...) (write) checks the
// dtype always and the indices in debug builds (NDEBUG unset); kernels use data<T>() /
// mutable_data<T>() and do their own arithmetic.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"
#include "core/float_formats.h"

namespace cachalot {

inline constexpr int kMaxTensorDims = 8;
inline constexpr size_t kTensorAlignment = 64;

// A small fixed-capacity list of dimension sizes or strides.
class Dims {
 public:
  Dims() = default;
  Dims(std::initializer_list<int64_t> values);
  explicit Dims(std::span<const int64_t> values);
  int size() const { return size_; }
  int64_t operator[](int i) const { return values_[i]; }
  int64_t& operator[](int i) { return values_[i]; }
  const int64_t* begin() const { return values_.data(); }
  const int64_t* end() const { return values_.data() + size_; }
  int64_t product() const;  // 1 for an empty list (a scalar)
  bool operator==(const Dims& other) const;
  std::string to_string() const;  // "[2, 3]"

 private:
  std::array<int64_t, kMaxTensorDims> values_{};
  int size_ = 0;
};

// Maps a C++ element type to its DType, for the typed accessors.
template <typename T> struct DTypeOf;
template <> struct DTypeOf<double> { static constexpr DType value = DType::kF64; };
template <> struct DTypeOf<float> { static constexpr DType value = DType::kF32; };
template <> struct DTypeOf<fp16> { static constexpr DType value = DType::kF16; };
template <> struct DTypeOf<bf16> { static constexpr DType value = DType::kBF16; };
template <> struct DTypeOf<fp8_e4m3> { static constexpr DType value = DType::kF8E4M3; };
template <> struct DTypeOf<fp8_e5m2> { static constexpr DType value = DType::kF8E5M2; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::kI64; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::kI32; };
template <> struct DTypeOf<int16_t> { static constexpr DType value = DType::kI16; };
template <> struct DTypeOf<int8_t> { static constexpr DType value = DType::kI8; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::kU8; };
template <> struct DTypeOf<bool> { static constexpr DType value = DType::kBool; };

class Tensor {
 public:
  Tensor() = default;

  // Owning, 64-byte aligned, contiguous. empty() leaves the bytes uninitialised.
  static Tensor empty(DType dtype, Dims shape);
  static Tensor zeros(DType dtype, Dims shape);
  // A view over memory someone else owns; `owner` (may be null) is kept alive as long as any
  // Tensor sharing this view. Read-only views reject mutable access.
  static Tensor view(const void* data, DType dtype, Dims shape, std::shared_ptr<const void> owner,
                     bool writable = false);
  static Tensor view(void* data, DType dtype, Dims shape, Dims strides,
                     std::shared_ptr<const void> owner, bool writable);

  bool defined() const { return data_ != nullptr || numel() == 0; }
  DType dtype() const { return dtype_; }
  const Dims& shape() const { return shape_; }
  const Dims& strides() const { return strides_; }
  int dim() const { return shape_.size(); }
  int64_t size(int d) const;  // negative d counts from the end
  int64_t stride(int d) const;
  int64_t numel() const { return shape_.product(); }
  size_t element_size() const { return dtype_size(dtype_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  bool is_contiguous() const;
  bool writable() const { return writable_; }

  const void* raw_data() const { return data_; }
  void* mutable_raw_data();

  template <typename T> const T* data() const {
    check_dtype(DTypeOf<T>::value);
    return static_cast<const T*>(data_);
  }
  template <typename T> T* mutable_data() {
    check_dtype(DTypeOf<T>::value);
    return static_cast<T*>(mutable_raw_data());
  }

  // Reading works on any tensor; writing needs a writable one (read-only views throw).
  template <typename T, typename... I> const T& at(I... index) const {
    return *(data<T>() + offset_of({static_cast<int64_t>(index)...}));
  }
  template <typename T, typename... I> T& mutable_at(I... index) {
    return *(mutable_data<T>() + offset_of({static_cast<int64_t>(index)...}));
  }

  // Views sharing storage.
  Tensor slice(int d, int64_t begin, int64_t end) const;  // [begin, end) along d
  Tensor select(int d, int64_t index) const;              // drops dimension d
  Tensor reshape(Dims shape) const;                       // contiguous tensors only
  Tensor transpose(int d0, int d1) const;
  // A contiguous owning copy (same dtype).
  Tensor clone() const;

  std::string description() const;  // "BF16[2, 3]"

 private:
  int normalize_dim(int d) const;
  void check_dtype(DType expected) const;
  int64_t offset_of(std::initializer_list<int64_t> index) const;

  DType dtype_ = DType::kF32;
  Dims shape_;
  Dims strides_;
  void* data_ = nullptr;
  bool writable_ = false;
  std::shared_ptr<const void> owner_;
};

Dims contiguous_strides(const Dims& shape);

}  // namespace cachalot
