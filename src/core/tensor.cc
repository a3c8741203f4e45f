#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/buffer_cache.h"

namespace cachalot {

Dims::Dims(std::initializer_list<int64_t> values) : Dims(std::span<const int64_t>(values.begin(), values.size())) {}

Dims::Dims(std::span<const int64_t> values) {
  CACHALOT_CHECK_ARG(values.size() <= kMaxTensorDims, "tensors have at most {} dimensions, got {}",
                     kMaxTensorDims, values.size());
  size_ = static_cast<int>(values.size());
  for (int i = 0; i < size_; ++i) values_[i] = values[i];
}

int64_t Dims::product() const {
  int64_t p = 1;
  for (int i = 0; i < size_; ++i) p *= values_[i];
  return p;
}

bool Dims::operator==(const Dims& other) const {
  if (size_ != other.size_) return false;
  for (int i = 0; i < size_; ++i)
    if (values_[i] != other.values_[i]) return false;
  return true;
}

std::string Dims::to_string() const {
  std::string s = "[";
  for (int i = 0; i < size_; ++i) s += (i ? ", " : "") + std::to_string(values_[i]);
  return s + "]";
}

Dims contiguous_strides(const Dims& shape) {
  Dims strides = shape;
  int64_t stride = 1;
  for (int i = shape.size() - 1; i >= 0; --i) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

namespace {

void check_shape(const Dims& shape) {
  for (int64_t extent : shape)
    CACHALOT_CHECK_ARG(extent >= 0, "tensor shape {} has a negative dimension", shape.to_string());
}

}  // namespace

Tensor Tensor::empty(DType dtype, Dims shape) {
  check_shape(shape);
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.writable_ = true;
  const size_t bytes = t.nbytes();
  void* memory = allocate_buffer(bytes);
  if (memory == nullptr)
    raise(ErrorKind::kResourceExhausted, "out of memory allocating {} bytes for tensor {}", bytes,
          t.description());
  t.data_ = memory;
  t.owner_ = std::shared_ptr<const void>(memory, [bytes](const void* p) { release_buffer(const_cast<void*>(p), bytes); });
  return t;
}

Tensor Tensor::zeros(DType dtype, Dims shape) {
  Tensor t = empty(dtype, shape);
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::view(const void* data, DType dtype, Dims shape, std::shared_ptr<const void> owner,
                    bool writable) {
  return view(const_cast<void*>(data), dtype, shape, contiguous_strides(shape), std::move(owner),
              writable);
}

Tensor Tensor::view(void* data, DType dtype, Dims shape, Dims strides,
                    std::shared_ptr<const void> owner, bool writable) {
  check_shape(shape);
  CACHALOT_CHECK_ARG(strides.size() == shape.size(), "tensor view: {} strides for shape {}",
                     strides.size(), shape.to_string());
  CACHALOT_CHECK_ARG(data != nullptr || shape.product() == 0, "tensor view over a null pointer");
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.strides_ = strides;
  t.data_ = data;
  t.writable_ = writable;
  t.owner_ = std::move(owner);
  return t;
}

int Tensor::normalize_dim(int d) const {
  const int n = dim();
  CACHALOT_CHECK_ARG(d >= -n && d < n, "dimension {} out of range for tensor {}", d, description());
  return d < 0 ? d + n : d;
}

int64_t Tensor::size(int d) const { return shape_[normalize_dim(d)]; }
int64_t Tensor::stride(int d) const { return strides_[normalize_dim(d)]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int i = dim() - 1; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

void* Tensor::mutable_raw_data() {
  if (!writable_)
    raise(ErrorKind::kInvalidArgument, "tensor {} is a read-only view (e.g. mmap'd weights)",
          description());
  return data_;
}

void Tensor::check_dtype(DType expected) const {
  if (dtype_ != expected)
    raise(ErrorKind::kInvalidArgument, "tensor {} accessed as {}", description(), dtype_name(expected));
}

int64_t Tensor::offset_of(std::initializer_list<int64_t> index) const {
#ifndef NDEBUG
  CACHALOT_CHECK_ARG(static_cast<int>(index.size()) == dim(), "{} indices for tensor {}",
                     index.size(), description());
#endif
  int64_t offset = 0;
  int d = 0;
  for (int64_t i : index) {
#ifndef NDEBUG
    CACHALOT_CHECK_ARG(i >= 0 && i < shape_[d], "index {} out of range [0, {}) in dimension {} of {}",
                       i, shape_[d], d, description());
#endif
    offset += i * strides_[d++];
  }
  return offset;
}

Tensor Tensor::slice(int d, int64_t begin, int64_t end) const {
  d = normalize_dim(d);
  CACHALOT_CHECK_ARG(0 <= begin && begin <= end && end <= shape_[d],
                     "slice [{}, {}) out of range [0, {}] in dimension {} of {}", begin, end,
                     shape_[d], d, description());
  Tensor t = *this;
  t.shape_[d] = end - begin;
  t.data_ = static_cast<char*>(data_) + begin * strides_[d] * static_cast<int64_t>(element_size());
  return t;
}

Tensor Tensor::select(int d, int64_t index) const {
  d = normalize_dim(d);
  Tensor t = slice(d, index, index + 1);
  // Rebuild without dimension d.
  std::array<int64_t, kMaxTensorDims> new_shape{}, new_strides{};
  int n = 0;
  for (int i = 0; i < dim(); ++i) {
    if (i == d) continue;
    new_shape[n] = t.shape_[i];
    new_strides[n] = t.strides_[i];
    ++n;
  }
  t.shape_ = Dims(std::span<const int64_t>(new_shape.data(), n));
  t.strides_ = Dims(std::span<const int64_t>(new_strides.data(), n));
  return t;
}

Tensor Tensor::reshape(Dims shape) const {
  check_shape(shape);
  CACHALOT_CHECK_ARG(is_contiguous(), "reshape of non-contiguous tensor {}; clone() it first",
                     description());
  CACHALOT_CHECK_ARG(shape.product() == numel(), "cannot reshape {} to {}: {} vs {} elements",
                     description(), shape.to_string(), numel(), shape.product());
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::transpose(int d0, int d1) const {
  d0 = normalize_dim(d0);
  d1 = normalize_dim(d1);
  Tensor t = *this;
  std::swap(t.shape_[d0], t.shape_[d1]);
  std::swap(t.strides_[d0], t.strides_[d1]);
  return t;
}

Tensor Tensor::clone() const {
  Tensor out = empty(dtype_, shape_);
  const size_t elem = element_size();
  if (is_contiguous()) {
    if (nbytes() > 0) std::memcpy(out.data_, data_, nbytes());
    return out;
  }
  // Walk the elements in row-major order with an odometer over the source strides.
  std::array<int64_t, kMaxTensorDims> index{};
  auto* dst = static_cast<char*>(out.data_);
  const auto* src = static_cast<const char*>(data_);
  for (int64_t n = 0; n < numel(); ++n) {
    int64_t offset = 0;
    for (int d = 0; d < dim(); ++d) offset += index[d] * strides_[d];
    std::memcpy(dst + n * static_cast<int64_t>(elem), src + offset * static_cast<int64_t>(elem), elem);
    for (int d = dim() - 1; d >= 0; --d) {
      if (++index[d] < shape_[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

std::string Tensor::description() const {
  return std::string(dtype_name(dtype_)) + shape_.to_string();
}

}  // namespace cachalot
