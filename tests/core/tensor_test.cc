#include "core/tensor.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <numeric>

#include "core/buffer_cache.h"

namespace cachalot {
namespace {

TEST(Tensor, OwningTensorsAreAlignedAndContiguous) {
  for (int64_t n : {0, 1, 3, 1000}) {
    Tensor t = Tensor::empty(DType::kBF16, {n, 3});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % kTensorAlignment, 0u);
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_EQ(t.nbytes(), static_cast<size_t>(n * 3 * 2));
    EXPECT_EQ(t.strides(), (Dims{3, 1}));
  }
  Tensor z = Tensor::zeros(DType::kF32, {4, 5});
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) EXPECT_EQ(z.at<float>(i, j), 0.0f);
  Tensor scalar = Tensor::zeros(DType::kI64, {});
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(scalar.dim(), 0);
}

TEST(Tensor, RejectsBadShapesAndWrongDtypes) {
  EXPECT_THROW(Tensor::empty(DType::kF32, {2, -1}), Error);
  EXPECT_THROW(Tensor::empty(DType::kF32, {1, 1, 1, 1, 1, 1, 1, 1, 1}), Error);
  Tensor t = Tensor::zeros(DType::kF32, {2});
  EXPECT_THROW(t.data<bf16>(), Error);
  EXPECT_THROW(t.size(2), Error);
  EXPECT_EQ(t.size(-1), 2);
}

TEST(Tensor, ViewsShareStorageAndIndexThroughStrides) {
  Tensor t = Tensor::empty(DType::kI32, {3, 4});
  std::iota(t.mutable_data<int32_t>(), t.mutable_data<int32_t>() + 12, 0);
  Tensor row = t.select(0, 1);
  EXPECT_EQ(row.shape(), (Dims{4}));
  EXPECT_EQ(row.at<int32_t>(2), 6);
  Tensor col = t.select(1, 2);
  EXPECT_EQ(col.shape(), (Dims{3}));
  EXPECT_EQ(col.at<int32_t>(2), 10);
  EXPECT_FALSE(col.is_contiguous());
  Tensor tr = t.transpose(0, 1);
  EXPECT_EQ(tr.shape(), (Dims{4, 3}));
  EXPECT_EQ(tr.at<int32_t>(3, 2), 11);
  Tensor packed = tr.clone();
  EXPECT_TRUE(packed.is_contiguous());
  EXPECT_EQ(packed.data<int32_t>()[1], 4);  // row 0 of the transpose is column 0: 0, 4, 8
  Tensor sl = t.slice(1, 1, 3);
  EXPECT_EQ(sl.shape(), (Dims{3, 2}));
  EXPECT_EQ(sl.at<int32_t>(2, 1), 10);
  sl.mutable_at<int32_t>(0, 0) = 100;  // writes through to t
  EXPECT_EQ(t.at<int32_t>(0, 1), 100);
  EXPECT_THROW(t.slice(0, 2, 5), Error);
  EXPECT_EQ(t.reshape({2, 6}).at<int32_t>(1, 0), 6);
  EXPECT_THROW(t.reshape({5}), Error);
  EXPECT_THROW(tr.reshape({12}), Error);  // not contiguous
}

TEST(Tensor, ExternalViewsKeepTheirOwnerAliveAndCanBeReadOnly) {
  auto owner = std::make_shared<std::vector<float>>(6, 1.5f);
  Tensor v = Tensor::view(owner->data(), DType::kF32, {2, 3}, owner);
  EXPECT_EQ(owner.use_count(), 2);
  EXPECT_FALSE(v.writable());
  EXPECT_EQ(v.at<float>(1, 2), 1.5f);
  EXPECT_THROW(v.mutable_data<float>(), Error);
  {
    Tensor copy = v;
    EXPECT_EQ(owner.use_count(), 3);
  }
  EXPECT_EQ(owner.use_count(), 2);
  EXPECT_THROW(Tensor::view(nullptr, DType::kF32, {2}, nullptr), Error);
}

#ifndef NDEBUG
TEST(Tensor, DebugBuildsCheckIndices) {
  Tensor t = Tensor::zeros(DType::kF32, {2, 3});
  EXPECT_THROW(t.at<float>(2, 0), Error);
  EXPECT_THROW(t.at<float>(0, -1), Error);
  EXPECT_THROW(t.at<float>(0), Error);  // wrong number of indices
  EXPECT_THROW(t.mutable_at<float>(0, 3), Error);
}
#endif

TEST(DType, NamesRoundTrip) {
  for (DType d : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kF8E5M2,
                  DType::kI64, DType::kI32, DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    EXPECT_EQ(dtype_from_name(dtype_name(d)), d);
  }
  EXPECT_EQ(dtype_size(DType::kF8E4M3), 1u);
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_FALSE(dtype_from_name("F4").has_value());
}

}  // namespace
}  // namespace cachalot

namespace cachalot {
namespace {

TEST(BufferCache, LargeBuffersAreReusedAndSmallOnesAreNot) {
  drop_buffer_cache();
  const size_t large = size_t{3} << 20;
  void* a = allocate_buffer(large);
  ASSERT_NE(a, nullptr);
  std::memset(a, 1, large);  // every byte is usable
  release_buffer(a, large);
#if !defined(__SANITIZE_ADDRESS__)
  EXPECT_EQ(cached_buffer_bytes(), size_t{4} << 20);  // rounded to 2 MiB pages
  void* b = allocate_buffer(large - 1000);  // a similar size reuses the cached buffer
  EXPECT_EQ(b, a);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % (size_t{2} << 20), 0u);
  void* c = allocate_buffer(size_t{1} << 20);  // nothing cached fits within 2x: a new one
  EXPECT_NE(c, a);
  release_buffer(c, size_t{1} << 20);
  release_buffer(b, large - 1000);
  EXPECT_EQ(cached_buffer_bytes(), size_t{6} << 20);
#endif
  void* small = allocate_buffer(100);
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small) % 64, 0u);
  release_buffer(small, 100);
  drop_buffer_cache();
  EXPECT_EQ(cached_buffer_bytes(), 0u);
}

}  // namespace
}  // namespace cachalot
