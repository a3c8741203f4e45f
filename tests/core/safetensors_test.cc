#include "core/safetensors.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "tests/support/test_support.h"

namespace cachalot {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Writes a file with the given header text (length prefix added) and `data_bytes` bytes after it.
void write_raw(const std::string& path, const std::string& header, size_t data_bytes,
               uint64_t claimed_header_len = UINT64_MAX) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t len = claimed_header_len == UINT64_MAX ? header.size() : claimed_header_len;
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(len >> (8 * i)));
  out << header << std::string(data_bytes, '\0');
}

// Expects opening `path` to fail with kCorruptData and a message naming the file and `needle`.
void expect_corrupt(const std::string& path, const std::string& needle) {
  try {
    SafetensorsFile::open(path);
    FAIL() << "opened a corrupt file; expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruptData) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Safetensors, WriterAndReaderRoundTripEveryDtype) {
  testing::TempDir dir;
  SafetensorsWriter writer;
  std::vector<Tensor> originals;
  int k = 0;
  for (DType d : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kF8E5M2,
                  DType::kI64, DType::kI32, DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    Tensor t = Tensor::empty(d, {3, 5});
    auto* bytes = static_cast<uint8_t*>(t.mutable_raw_data());
    for (size_t i = 0; i < t.nbytes(); ++i) bytes[i] = static_cast<uint8_t>(i * 7 + k);
    writer.add(std::string("t").append(std::to_string(k++)), t);
    originals.push_back(t);
  }
  Tensor base = Tensor::empty(DType::kI32, {4, 3});
  for (int i = 0; i < 12; ++i) base.mutable_data<int32_t>()[i] = i;
  writer.add("transposed", base.transpose(0, 1));  // non-contiguous: written packed
  writer.add("empty", Tensor::empty(DType::kF32, {0, 4}));
  writer.set_metadata("format", "pt");
  const std::string path = dir.file("a.safetensors");
  const uint64_t written = writer.write(path);
  EXPECT_EQ(written, fs::file_size(path));

  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.tensors().size(), originals.size() + 2);
  for (size_t i = 0; i < originals.size(); ++i) {
    const Tensor t = f.tensor("t" + std::to_string(i));
    EXPECT_EQ(t.dtype(), originals[i].dtype());
    EXPECT_EQ(t.shape(), originals[i].shape());
    EXPECT_EQ(0, std::memcmp(t.raw_data(), originals[i].raw_data(), t.nbytes()));
    EXPECT_FALSE(t.writable());
  }
  const Tensor tr = f.tensor("transposed");
  EXPECT_EQ(tr.shape(), (Dims{3, 4}));
  EXPECT_EQ(tr.at<int32_t>(2, 1), 5);
  EXPECT_EQ(f.tensor("empty").numel(), 0);
  // Data starts 8-byte aligned (header padded).
  EXPECT_EQ(f.find("t0")->data_offset % 8, 0u);
  try {
    f.tensor("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
  SafetensorsWriter dup;
  dup.add("x", originals[0]);
  EXPECT_THROW(dup.add("x", originals[0]), Error);
}

TEST(Safetensors, WrittenTensorsAreAlignedAndMisalignedOnesAreCopied) {
  testing::TempDir dir;
  SafetensorsWriter w;
  w.add("byte", Tensor::zeros(DType::kU8, {3}));
  w.add("word", Tensor::zeros(DType::kI32, {2}));
  w.add("half", Tensor::zeros(DType::kBF16, {1}));
  w.add("wide", Tensor::zeros(DType::kF64, {1}));
  w.write(dir.file("w.safetensors"));
  const SafetensorsFile written = SafetensorsFile::open(dir.file("w.safetensors"));
  for (const auto& t : written.tensors()) EXPECT_EQ(t.data_offset % dtype_size(t.dtype), 0u) << t.name;

  // A file (valid by the format) whose I32 tensor starts at an odd offset.
  std::string header = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                       "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[1,5]}}";
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::string p = dir.file("odd.safetensors");
  {
    std::ofstream out(p, std::ios::binary);
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i)));
    out << header;
    const char data[5] = {7, 0x2a, 0, 0, 0};
    out.write(data, 5);
  }
  const SafetensorsFile odd = SafetensorsFile::open(p);
  const Tensor b = odd.tensor("b");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.raw_data()) % 4, 0u);
  EXPECT_EQ(b.at<int32_t>(0), 42);
}

TEST(Safetensors, TensorViewsOutliveTheFileObject) {
  testing::TempDir dir;
  Tensor t = Tensor::empty(DType::kF32, {4});
  for (int i = 0; i < 4; ++i) t.mutable_data<float>()[i] = static_cast<float>(i) + 0.5f;
  SafetensorsWriter w;
  w.add("x", t);
  w.write(dir.file("x.safetensors"));
  Tensor view;
  {
    const SafetensorsFile f = SafetensorsFile::open(dir.file("x.safetensors"));
    view = f.tensor("x");
  }
  EXPECT_EQ(view.at<float>(3), 3.5f);  // the mapping is kept alive by the view
}

TEST(Safetensors, RejectsCorruptHeaders) {
  testing::TempDir dir;
  const std::string p = dir.file("bad.safetensors");
  auto entry = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return "{\"w\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}}";
  };

  { std::ofstream(p) << "abc"; }
  expect_corrupt(p, "shorter than the 8-byte header length");
  write_raw(p, "{}", 0, uint64_t{1} << 40);
  expect_corrupt(p, "exceeds");
  write_raw(p, "{}", 0, 1000);
  expect_corrupt(p, "truncated: the header says 1000 bytes");

  struct Case {
    std::string header;
    size_t data_bytes;
    std::string needle;  // what the error must say
  };
  const std::vector<Case> cases = {
      {"{\"w\": [1,", 0, "not valid JSON"},
      {"[1, 2]", 0, "not a JSON object"},
      {"{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\""},
      {entry("F4", "[1]", "[0,4]"), 4, "unsupported dtype \"F4\""},
      {entry("F32", "[-1]", "[0,4]"), 4, "not a non-negative integer"},
      {entry("F32", "7", "[0,4]"), 4, "\"shape\""},
      {entry("F32", "[1]", "[4,0]"), 4, "run backwards"},
      {entry("F32", "[2]", "[0,4]"), 4, "needs 8 bytes but data_offsets [0, 4] hold 4"},
      {entry("F32", "[1]", "[0]"), 4, "data_offsets"},
      {entry("F32", "[1]", "[0,-4]"), 4, "non-negative"},
      {entry("F32", "[4294967296,4294967296,4294967296]", "[0,4]"), 4, "overflows"},
      {entry("F32", "[4]", "[0,16]"), 10, "truncated: tensor 'w' needs bytes [0, 16)"},
      {entry("F32", "[1]", "[0,4]"), 6, "2 bytes after the last tensor"},
      {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
       "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6, "overlap"},
      {"{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
       "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}", 6, "2 unused bytes before tensor 'b'"},
      {"{\"__metadata__\":{\"k\":1}}", 0, "metadata \"k\" is not a string"},
      {"{\"w\":5}", 0, "not an object"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    write_raw(p, c.header, c.data_bytes);
    expect_corrupt(p, c.needle);
  }

  // An empty file set is fine: no tensors, no data.
  write_raw(p, "{}", 0);
  EXPECT_TRUE(SafetensorsFile::open(p).tensors().empty());
  // Missing files are kNotFound, naming the path.
  try {
    SafetensorsFile::open(dir.file("missing.safetensors"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("missing.safetensors"), std::string::npos);
  }
}

TEST(Safetensors, RejectsEveryTruncationOfARealShard) {
  CACHALOT_REQUIRE_FIXTURE(fixture, "tiny-dsv3");
  testing::TempDir dir;
  const std::string src = fixture + "/model-00002-of-00002.safetensors";
  const auto size = fs::file_size(src);
  const std::string bytes = read_text_file(src);
  // Cut points across the length prefix, the header and the data.
  for (uint64_t cut : {uint64_t{0}, uint64_t{5}, uint64_t{8}, uint64_t{100}, uint64_t{20000}, size / 2, size - 1}) {
    const std::string p = dir.file("cut.safetensors");
    { std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(cut)); }
    EXPECT_THROW(SafetensorsFile::open(p), Error) << "cut at " << cut;
  }
}

TEST(Checkpoint, OpensTheShardedFixtureAndReadsEveryTensor) {
  CACHALOT_REQUIRE_FIXTURE(fixture, "tiny-dsv3");
  const Checkpoint ckpt = Checkpoint::open(fixture);
  const json index = json::parse(read_text_file(fixture + "/model.safetensors.index.json"));
  EXPECT_EQ(ckpt.tensor_count(), index["weight_map"].size());
  EXPECT_EQ(ckpt.shards().size(), 2u);
  uint64_t checksum = 0;
  for (const auto& name : ckpt.tensor_names()) {
    const Tensor t = ckpt.tensor(name);
    EXPECT_EQ(fs::path(ckpt.shard_of(name).path()).filename(), index["weight_map"][name].get<std::string>());
    // Touch every byte: under ASan this proves the views stay inside their mappings.
    const auto* p = static_cast<const uint8_t*>(t.raw_data());
    for (size_t i = 0; i < t.nbytes(); ++i) checksum += p[i];
  }
  EXPECT_GT(checksum, 0u);
  const Tensor kv = ckpt.tensor("model.layers.0.self_attn.kv_a_proj_with_mqa.weight");
  EXPECT_EQ(kv.dtype(), DType::kF8E4M3);
  EXPECT_EQ(kv.shape(), (Dims{160, 256}));
  EXPECT_EQ(ckpt.info("model.layers.1.mlp.gate.e_score_correction_bias").dtype, DType::kF32);
  EXPECT_THROW(ckpt.tensor("model.layers.99.mlp.gate.weight"), Error);
}

TEST(Checkpoint, WritesAndReadsShardsWithAnIndex) {
  testing::TempDir dir;
  Tensor a = Tensor::zeros(DType::kBF16, {2, 2});
  Tensor b = Tensor::zeros(DType::kF32, {3});
  SafetensorsWriter s1, s2;
  s1.add("a", a);
  s2.add("b", b);
  const uint64_t total = a.nbytes() + b.nbytes();
  s1.write(dir.file("model-00001-of-00002.safetensors"));
  s2.write(dir.file("model-00002-of-00002.safetensors"));
  write_checkpoint_index(dir.path(), {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}},
                         total);
  const Checkpoint ckpt = Checkpoint::open(dir.path());
  EXPECT_EQ(ckpt.tensor_names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(ckpt.total_bytes(), total);
  EXPECT_EQ(ckpt.tensor("b").shape(), (Dims{3}));

  // A single file and a folder with model.safetensors open too.
  EXPECT_EQ(Checkpoint::open(dir.file("model-00002-of-00002.safetensors")).tensor_count(), 1u);
  testing::TempDir single;
  s1.write(single.file("model.safetensors"));
  EXPECT_EQ(Checkpoint::open(single.path()).tensor_count(), 1u);
}

// Opens a checkpoint expected to fail, checking the message names `needle`.
void expect_checkpoint_error(const std::string& path, const std::string& needle) {
  try {
    Checkpoint::open(path);
    FAIL() << "expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, ReportsBrokenFoldersByName) {
  testing::TempDir dir;
  SafetensorsWriter s1;
  s1.add("a", Tensor::zeros(DType::kU8, {4}));
  s1.write(dir.file("s1.safetensors"));
  s1.write(dir.file("s2.safetensors"));

  write_checkpoint_index(dir.path(), {{"a", "s1.safetensors"}, {"b", "s3.safetensors"}}, 8);
  expect_checkpoint_error(dir.path(), "s3.safetensors");
  write_checkpoint_index(dir.path(), {{"a", "s1.safetensors"}, {"zz", "s1.safetensors"}}, 8);
  expect_checkpoint_error(dir.path(), "'zz' (in s1.safetensors)");
  write_checkpoint_index(dir.path(), {{"a", "s1.safetensors"}, {"c", "s2.safetensors"}}, 8);
  expect_checkpoint_error(dir.path(), "tensor 'a' is in both");
  write_checkpoint_index(dir.path(), {{"a", "../s1.safetensors"}}, 8);
  expect_checkpoint_error(dir.path(), "not a file in the folder");
  write_text_file(dir.file("model.safetensors.index.json"), "{\"weight_map\": 3}");
  expect_checkpoint_error(dir.path(), "weight_map");
  write_text_file(dir.file("model.safetensors.index.json"), "{not json");
  expect_checkpoint_error(dir.path(), "not valid JSON");

  testing::TempDir empty;
  expect_checkpoint_error(empty.path(), "neither");
  expect_checkpoint_error(empty.file("nothing-here"), "does not exist");
}

TEST(Checkpoint, TruncatedShardOfTheFixtureNamesTheFile) {
  CACHALOT_REQUIRE_FIXTURE(fixture, "tiny-dsv3");
  testing::TempDir dir;
  testing::copy_folder(fixture, dir);
  const std::string shard = dir.file("model-00001-of-00002.safetensors");
  fs::resize_file(shard, fs::file_size(shard) - 1000);
  expect_checkpoint_error(dir.path(), "model-00001-of-00002.safetensors: truncated");
}

}  // namespace
}  // namespace cachalot
