//===- SafetensorsTest.cpp - safetensors reader and writer ----------------===//
//
// Round trips of every dtype, the writer's deterministic layout and
// crash-safe replacement, and one hand-corrupted file per validation rule
// of the reader, each checked for an error that names the file and the
// offending field.
//
//===----------------------------------------------------------------------===//

#include "../TestSupport.h"
#include "diffrt/Error.h"
#include "diffrt/Safetensors.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <random>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace diffrt;
using namespace diffrt::testsupport;

namespace {

/// A file with a hand-written header: 8-byte length (or `lengthOverride`),
/// the header text, then `dataBytes` bytes of payload.
void writeRaw(const std::string &path, const std::string &header, size_t dataBytes,
              uint64_t lengthOverride = UINT64_MAX) {
  std::ofstream out(path, std::ios::binary);
  uint64_t length = lengthOverride == UINT64_MAX ? header.size() : lengthOverride;
  for (int i = 0; i < 8; ++i)
    out.put(static_cast<char>(length >> (8 * i)));
  out << header;
  out << std::string(dataBytes, '\x11');
}

std::vector<unsigned char> readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

TEST(Safetensors, RoundTripEveryDtype) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("all.safetensors");
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> dist(-3.0f, 3.0f);

  std::vector<float> f32(2 * 3 * 4);
  for (float &v : f32)
    v = dist(gen);
  std::vector<uint16_t> f16(5), bf16(5);
  std::vector<float> f16Expected(5), bf16Expected(5);
  for (int i = 0; i < 5; ++i) {
    float v = dist(gen);
    f16[i] = floatToHalf(v);
    bf16[i] = floatToBf16(v);
    f16Expected[i] = halfToFloat(f16[i]);
    bf16Expected[i] = bf16ToFloat(bf16[i]);
  }
  std::vector<double> f64 = {1.0 / 3.0, -2.5e-300, 1e300, 0.0};
  std::vector<int32_t> i32 = {-7, 0, 2147483647};
  std::vector<int64_t> i64 = {INT64_MIN, -1, 42, INT64_MAX};
  std::vector<uint8_t> u8 = {0, 1, 128, 255, 17, 3};
  float scalar = 6.25f;

  SafetensorsWriter writer;
  writer.addF32("a.f32", {2, 3, 4}, f32.data());
  writer.add("b.f16", DType::F16, {5}, f16.data());
  writer.add("c.bf16", DType::BF16, {5, 1}, bf16.data());
  writer.add("d.f64", DType::F64, {2, 2}, f64.data());
  writer.add("e.i32", DType::I32, {3}, i32.data());
  writer.add("f.i64", DType::I64, {4}, i64.data());
  writer.add("g.u8", DType::U8, {2, 3}, u8.data());
  writer.addF32("h.scalar", {}, &scalar);
  writer.addF32("i.empty", {0, 7}, nullptr);
  writer.setMetadata("format", "pt");
  writer.setMetadata("step", "1200");
  writer.write(path);

  SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_EQ(file.path(), path);
  std::vector<std::string> expectedNames = {"a.f32", "b.f16", "c.bf16", "d.f64", "e.i32",
                                            "f.i64", "g.u8",  "h.scalar", "i.empty"};
  EXPECT_EQ(file.names(), expectedNames);
  EXPECT_TRUE(file.contains("d.f64"));
  EXPECT_FALSE(file.contains("d.f32"));

  EXPECT_EQ(file.info("a.f32").dtype, DType::F32);
  EXPECT_EQ(file.info("a.f32").shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(file.info("a.f32").bytes, 96u);
  EXPECT_EQ(file.info("c.bf16").shape, (std::vector<int64_t>{5, 1}));
  EXPECT_EQ(file.info("h.scalar").shape, std::vector<int64_t>{});
  EXPECT_EQ(file.info("h.scalar").bytes, 4u);
  EXPECT_EQ(file.info("i.empty").bytes, 0u);

  EXPECT_EQ(file.readF32("a.f32"), f32);
  EXPECT_EQ(file.readF32("b.f16"), f16Expected);
  EXPECT_EQ(file.readF32("c.bf16"), bf16Expected);
  std::vector<float> f64AsFloat = file.readF32("d.f64");
  ASSERT_EQ(f64AsFloat.size(), 4u);
  for (size_t i = 0; i < 4; ++i)
    EXPECT_EQ(f64AsFloat[i], static_cast<float>(f64[i]));
  EXPECT_EQ(file.readF32("h.scalar"), std::vector<float>{6.25f});
  EXPECT_TRUE(file.readF32("i.empty").empty());

  auto sameBytes = [&](const char *name, const void *expected, size_t bytes) {
    ASSERT_EQ(file.info(name).bytes, bytes) << name;
    EXPECT_EQ(std::memcmp(file.data(name), expected, bytes), 0) << name;
  };
  sameBytes("b.f16", f16.data(), 10);
  sameBytes("c.bf16", bf16.data(), 10);
  sameBytes("d.f64", f64.data(), 32);
  sameBytes("e.i32", i32.data(), 12);
  sameBytes("f.i64", i64.data(), 32);
  sameBytes("g.u8", u8.data(), 6);

  expectError([&] { file.readF32("e.i32"); }, {path, "'e.i32'", "I32"});
  expectError([&] { file.readF32("g.u8"); }, {path, "'g.u8'", "U8"});

  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"step", "1200"}};
  EXPECT_EQ(file.metadata(), metadata);
}

TEST(Safetensors, WriterLayoutIsSortedPackedAndPadded) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("layout.safetensors");
  float b[3] = {1, 2, 3};
  float a[2] = {4, 5};
  SafetensorsWriter writer;
  writer.addF32("zeta", {3}, b);
  writer.addF32("alpha", {2}, a);
  writer.write(path);

  std::vector<unsigned char> bytes = readBytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i)
    length = (length << 8) | bytes[size_t(i)];
  EXPECT_EQ(length % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + length + 20);
  std::string header(bytes.begin() + 8, bytes.begin() + 8 + long(length));
  EXPECT_EQ(header.find_last_not_of(' ') + 1,
            std::string(R"({"alpha":{"data_offsets":[0,8],"dtype":"F32","shape":[2]},)"
                        R"("zeta":{"data_offsets":[8,20],"dtype":"F32","shape":[3]}})")
                .size());
  EXPECT_EQ(header.rfind(R"({"alpha":{"data_offsets":[0,8],"dtype":"F32","shape":[2]},)", 0), 0u)
      << header;
  float payload[5];
  std::memcpy(payload, bytes.data() + 8 + length, 20);
  EXPECT_EQ(payload[0], 4.0f);
  EXPECT_EQ(payload[1], 5.0f);
  EXPECT_EQ(payload[2], 1.0f);
  EXPECT_EQ(payload[4], 3.0f);
}

TEST(Safetensors, WriteLeavesNoTemporaryFileAndReplacesAtomically) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("ckpt.safetensors");
  float v[4] = {1, 2, 3, 4};
  SafetensorsWriter first;
  first.addF32("w", {4}, v);
  first.write(path);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ckpt.safetensors"});

  // Overwriting an existing (and currently mapped) file must leave the old
  // mapping intact: rename replaces the directory entry, not the inode.
  SafetensorsFile old = SafetensorsFile::open(path);
  float u[2] = {9, 8};
  SafetensorsWriter second;
  second.addF32("u", {2}, u);
  second.write(path);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ckpt.safetensors"});
  EXPECT_EQ(old.readF32("w"), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(SafetensorsFile::open(path).readF32("u"), (std::vector<float>{9, 8}));

  expectError([&] { second.write(dir.file("missing-dir/x.safetensors")); },
              {"missing-dir/x.safetensors", "temporary file"});
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ckpt.safetensors"});
}

TEST(Safetensors, WriterRejectsBadInput) {
  SafetensorsWriter writer;
  float v[2] = {1, 2};
  writer.addF32("w", {2}, v);
  expectError([&] { writer.addF32("w", {2}, v); }, {"'w'", "twice"});
  expectError([&] { writer.addF32("n", {2, -1}, v); }, {"'n'", "-1"});
  expectError([&] { writer.addF32("__metadata__", {2}, v); }, {"__metadata__", "reserved"});
  expectError([&] { writer.addF32("null", {2}, nullptr); }, {"'null'", "null data"});
}

TEST(Safetensors, MoveTransfersTheMapping) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("m.safetensors");
  float v[3] = {1.5f, 2.5f, 3.5f};
  SafetensorsWriter writer;
  writer.addF32("v", {3}, v);
  writer.write(path);
  SafetensorsFile a = SafetensorsFile::open(path);
  const void *pointer = a.data("v");
  SafetensorsFile b(std::move(a));
  EXPECT_EQ(b.data("v"), pointer);
  EXPECT_EQ(b.readF32("v"), (std::vector<float>{1.5f, 2.5f, 3.5f}));
  SafetensorsFile c = SafetensorsFile::open(path);
  c = std::move(b);
  EXPECT_EQ(c.readF32("v"), (std::vector<float>{1.5f, 2.5f, 3.5f}));
}

TEST(Safetensors, UnknownNameSuggestsCloseNames) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("n.safetensors");
  float v = 0;
  SafetensorsWriter writer;
  for (const char *name : {"blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
                           "blocks.0.mlp.fc1.weight", "final_layer.linear.weight"})
    writer.addF32(name, {}, &v);
  writer.write(path);
  SafetensorsFile file = SafetensorsFile::open(path);
  expectError([&] { file.info("blocks.0.attn.qkv.weights"); },
              {path, "'blocks.0.attn.qkv.weights'", "the file has 4 tensors",
               "closest: 'blocks.0.attn.qkv.weight'"});
  expectError([&] { file.data("x"); }, {path, "'x'"});

  std::string empty = dir.file("empty.safetensors");
  SafetensorsWriter().write(empty);
  expectError([&] { SafetensorsFile::open(empty).info("w"); },
              {empty, "'w'", "the file has 0 tensors"});
}

TEST(Safetensors, RejectsFileShorterThanLengthField) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("tiny.safetensors");
  std::ofstream(path, std::ios::binary) << "abc";
  expectError([&] { SafetensorsFile::open(path); }, {path, "3 bytes", "8-byte"});
  expectError([&] { SafetensorsFile::open(dir.file("absent.safetensors")); },
              {"absent.safetensors", "cannot open"});
}

TEST(Safetensors, RejectsHeaderLengthPastTheEnd) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("len.safetensors");
  writeRaw(path, "{}", 0, 1000);
  expectError([&] { SafetensorsFile::open(path); },
              {path, "header length 1000", "file size 10"});
}

TEST(Safetensors, RejectsHeaderOverTheSizeLimit) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("huge.safetensors");
  uint64_t length = (100ull << 20) + 8;
  writeRaw(path, "", 0, length);
  // Sparse: the file claims its header but occupies no disk space.
  fs::resize_file(path, 8 + length);
  expectError([&] { SafetensorsFile::open(path); },
              {path, "header length 104857608", "100 MiB"});
}

TEST(Safetensors, RejectsBadJson) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("json.safetensors");
  writeRaw(path, R"({"w": {"dtype": "F32", )", 0);
  expectError([&] { SafetensorsFile::open(path); }, {path, "header JSON", "does not parse"});
  writeRaw(path, "[1, 2]", 0);
  expectError([&] { SafetensorsFile::open(path); }, {path, "not an object"});
}

TEST(Safetensors, RejectsUnknownDtype) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("dtype.safetensors");
  writeRaw(path, R"({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}})", 2);
  expectError([&] { SafetensorsFile::open(path); }, {path, "tensor 'w'", "dtype 'F8_E4M3'"});
  writeRaw(path, R"({"w": {"dtype": 4, "shape": [2], "data_offsets": [0, 2]}})", 2);
  expectError([&] { SafetensorsFile::open(path); }, {path, "tensor 'w'", "dtype is 4"});
}

TEST(Safetensors, RejectsNegativeOrNonIntegerShape) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("shape.safetensors");
  writeRaw(path, R"({"w": {"dtype": "F32", "shape": [2, -3], "data_offsets": [0, 0]}})", 0);
  expectError([&] { SafetensorsFile::open(path); }, {path, "tensor 'w'", "shape[1]", "-3"});
  writeRaw(path, R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 10]}})", 10);
  expectError([&] { SafetensorsFile::open(path); }, {path, "tensor 'w'", "shape[0]", "2.5"});
  writeRaw(path, R"({"w": {"dtype": "F32", "data_offsets": [0, 0]}})", 0);
  expectError([&] { SafetensorsFile::open(path); }, {path, "tensor 'w'", "'shape'"});
}

TEST(Safetensors, RejectsOffsetsNotMatchingTheShape) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("w.safetensors");
  writeRaw(path,
           R"({"blocks.0.attn.qkv.weight": {"dtype": "F32", "shape": [3, 9], )"
           R"("data_offsets": [0, 100]}})",
           100);
  try {
    SafetensorsFile::open(path);
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              path + ": tensor 'blocks.0.attn.qkv.weight': data_offsets [0, 100] hold 100 bytes "
                     "but F32 shape [3, 9] needs 108");
  }
  writeRaw(path, R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8);
  expectError([&] { SafetensorsFile::open(path); }, {path, "tensor 'w'", "[8, 4]", "begin > end"});
  writeRaw(path, R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 8);
  expectError([&] { SafetensorsFile::open(path); }, {path, "tensor 'w'", "data_offsets"});
}

TEST(Safetensors, RejectsTruncatedData) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("trunc.safetensors");
  std::vector<float> v(16, 1.0f);
  SafetensorsWriter writer;
  writer.addF32("layer.weight", {4, 4}, v.data());
  writer.write(path);
  fs::resize_file(path, fs::file_size(path) - 5);
  expectError([&] { SafetensorsFile::open(path); },
              {path, "tensor 'layer.weight'", "data_offsets [0, 64]", "59 bytes"});
}

TEST(Safetensors, RejectsOverlappingRanges) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("overlap.safetensors");
  writeRaw(path,
           R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, )"
           R"("b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}})",
           20);
  expectError([&] { SafetensorsFile::open(path); },
              {path, "tensor 'b'", "[12, 20]", "overlap tensor 'a'", "[0, 16]"});
  // Adjacent ranges and empty tensors do not overlap.
  writeRaw(path,
           R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, )"
           R"("b": {"dtype": "F32", "shape": [1], "data_offsets": [16, 20]}, )"
           R"("e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
           20);
  EXPECT_EQ(SafetensorsFile::open(path).names().size(), 3u);
}

TEST(Safetensors, RejectsNonStringMetadata) {
  TempDir dir{"diffrt-safetensors"};
  std::string path = dir.file("meta.safetensors");
  writeRaw(path, R"({"__metadata__": {"epoch": 3}})", 0);
  expectError([&] { SafetensorsFile::open(path); }, {path, "__metadata__", "'epoch'", "string"});
  writeRaw(path, R"({"__metadata__": ["x"]})", 0);
  expectError([&] { SafetensorsFile::open(path); }, {path, "__metadata__", "not an object"});
}
