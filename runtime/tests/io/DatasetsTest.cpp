//===- DatasetsTest.cpp - IDX image sets and precomputed latents ----------===//
//
// IDX files written here (raw and gzipped) and each of their malformations,
// the real Fashion-MNIST train split when the Debian package is installed,
// the pixel-to-model-input mapping, and latent datasets in safetensors.
//
//===----------------------------------------------------------------------===//

#include "../TestSupport.h"
#include "diffrt/Datasets.h"
#include "diffrt/Error.h"
#include "diffrt/Safetensors.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>

namespace fs = std::filesystem;
using namespace diffrt;
using namespace diffrt::testsupport;

namespace {

using Bytes = std::vector<unsigned char>;

Bytes idx(uint32_t magic, std::initializer_list<uint32_t> dims, const Bytes &payload) {
  Bytes out;
  auto put = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8)
      out.push_back(static_cast<unsigned char>(v >> shift));
  };
  put(magic);
  for (uint32_t d : dims)
    put(d);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

void writeRaw(const std::string &path, const Bytes &bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char *>(bytes.data()), std::streamsize(bytes.size()));
}

void writeGzip(const std::string &path, const Bytes &bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

// Five 3 x 4 images with pixel value 12 * i + position, labels 0..6.
const Bytes kPixels = [] {
  Bytes p(5 * 3 * 4);
  for (size_t i = 0; i < p.size(); ++i)
    p[i] = static_cast<unsigned char>((i * 37) % 256);
  return p;
}();
const Bytes kLabels = {3, 0, 6, 6, 1};

} // namespace

TEST(Datasets, LoadsRawAndGzippedIdx) {
  TempDir dir{"diffrt-datasets"};
  Bytes images = idx(0x803, {5, 3, 4}, kPixels);
  Bytes labels = idx(0x801, {5}, kLabels);
  writeRaw(dir.file("img"), images);
  writeRaw(dir.file("lbl"), labels);
  writeGzip(dir.file("img.gz"), images);
  writeGzip(dir.file("lbl.gz"), labels);
  for (auto [imagesPath, labelsPath] :
       {std::pair{"img", "lbl"}, std::pair{"img.gz", "lbl.gz"}, std::pair{"img.gz", "lbl"}}) {
    ImageDataset ds = loadIdx(dir.file(imagesPath), dir.file(labelsPath));
    EXPECT_EQ(ds.count, 5);
    EXPECT_EQ(ds.height, 3);
    EXPECT_EQ(ds.width, 4);
    EXPECT_EQ(ds.pixels, std::vector<uint8_t>(kPixels.begin(), kPixels.end()));
    EXPECT_EQ(ds.labels, (std::vector<int32_t>{3, 0, 6, 6, 1}));
    EXPECT_EQ(ds.numClasses, 7);
  }
}

TEST(Datasets, IdxMalformationsGiveNamedErrors) {
  TempDir dir{"diffrt-datasets"};
  std::string images = dir.file("images-idx3-ubyte.gz");
  std::string labels = dir.file("labels-idx1-ubyte");
  writeRaw(labels, idx(0x801, {5}, kLabels));

  // A label file where images are expected: right type, wrong rank.
  writeGzip(images, idx(0x801, {5}, kLabels));
  expectError([&] { loadIdx(images, labels); },
              {images, "0x00000801", "1 dimensions", "need 3", "0x00000803"});
  // Not unsigned bytes (0x0D is float).
  writeGzip(images, idx(0x0D03, {5, 3, 4}, kPixels));
  expectError([&] { loadIdx(images, labels); }, {images, "0x00000d03", "unsigned-byte"});
  // Truncated payload.
  writeGzip(images, idx(0x803, {5, 3, 4}, Bytes(kPixels.begin(), kPixels.end() - 1)));
  expectError([&] { loadIdx(images, labels); },
              {images, "truncated", "5 x 3 x 4", "need 60 payload bytes", "has 59"});
  // Trailing bytes.
  Bytes longer = kPixels;
  longer.push_back(0);
  writeGzip(images, idx(0x803, {5, 3, 4}, longer));
  expectError([&] { loadIdx(images, labels); }, {images, "has 61", "1 trailing"});
  // Header cut inside the dimensions.
  writeGzip(images, Bytes{0, 0, 8, 3, 0, 0, 0, 5, 0});
  expectError([&] { loadIdx(images, labels); }, {images, "truncated header", "16 bytes"});
  // Count mismatch between the two files.
  writeGzip(images, idx(0x803, {4, 3, 4}, Bytes(kPixels.begin(), kPixels.begin() + 48)));
  expectError([&] { loadIdx(images, labels); }, {images, labels, "4 images", "5 labels"});
  // Label file with an image magic.
  writeGzip(images, idx(0x803, {5, 3, 4}, kPixels));
  writeRaw(labels, idx(0x803, {5, 3, 4}, kPixels));
  expectError([&] { loadIdx(images, labels); }, {labels, "3 dimensions", "need 1"});
  // Missing file.
  expectError([&] { loadIdx(dir.file("nope.gz"), labels); }, {"nope.gz", "cannot open"});
  // A gzip stream cut short.
  Bytes gz;
  {
    std::string full = dir.file("full.gz");
    writeGzip(full, idx(0x803, {5, 3, 4}, kPixels));
    std::ifstream in(full, std::ios::binary);
    gz.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  writeRaw(images, Bytes(gz.begin(), gz.begin() + long(gz.size() / 2)));
  expectError([&] { loadIdx(images, labels); }, {images, "read failed", "unexpected end of file"});
}

TEST(Datasets, FashionMnistTrainSplit) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::is_directory(dir))
    GTEST_SKIP() << dir << " is absent; install the Debian package dataset-fashion-mnist";
  ImageDataset ds = loadFashionMnist(dir, "train");
  EXPECT_EQ(ds.count, 60000);
  EXPECT_EQ(ds.height, 28);
  EXPECT_EQ(ds.width, 28);
  EXPECT_EQ(ds.numClasses, 10);
  EXPECT_EQ(ds.pixels.size(), size_t(60000) * 28 * 28);
  ASSERT_EQ(ds.labels.size(), 60000u);
  // The training split is balanced: 6000 images per class.
  std::array<int, 10> perClass{};
  for (int32_t label : ds.labels)
    ++perClass[size_t(label)];
  for (int c = 0; c < 10; ++c)
    EXPECT_EQ(perClass[size_t(c)], 6000) << "class " << c;
}

TEST(Datasets, FashionMnistArgumentErrors) {
  TempDir dir{"diffrt-datasets"};
  expectError([&] { loadFashionMnist(dir.path().string(), "test"); }, {"'test'", "t10k"});
  expectError([&] { loadFashionMnist(dir.path().string(), "t10k"); },
              {"t10k-images-idx3-ubyte.gz", "dataset-fashion-mnist"});
}

TEST(Datasets, ToModelInputMapsAndPads) {
  ImageDataset ds;
  ds.count = 3;
  ds.height = 2;
  ds.width = 2;
  ds.pixels = {0, 255, 51, 127, 10, 20, 30, 40, 1, 2, 3, 4};
  ds.labels = {0, 1, 2};
  ds.numClasses = 3;
  // Images 1 and 2, padded to 4 x 4: one pixel of -1 on each side.
  std::vector<float> out = toModelInput(ds, 1, 2, 4);
  ASSERT_EQ(out.size(), 2u * 16u);
  for (int i = 0; i < 2; ++i)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) {
        float value = out[size_t(i * 16 + y * 4 + x)];
        bool inside = y >= 1 && y < 3 && x >= 1 && x < 3;
        float expected =
            inside ? float(ds.pixels[size_t((1 + i) * 4 + (y - 1) * 2 + (x - 1))] / 127.5 - 1.0)
                   : -1.0f;
        EXPECT_EQ(value, expected) << i << " " << y << " " << x;
      }
  std::vector<float> first = toModelInput(ds, 0, 1, 2);
  EXPECT_EQ(first, (std::vector<float>{-1.0f, 1.0f, float(51 / 127.5 - 1.0),
                                       float(127 / 127.5 - 1.0)}));
  EXPECT_FLOAT_EQ(first[3], -0.003921569f);

  expectError([&] { toModelInput(ds, 0, 1, 1); }, {"padTo 1", "2 x 2"});
  expectError([&] { toModelInput(ds, 2, 2, 4); }, {"[2, 4)", "3 images"});
  expectError([&] { toModelInput(ds, -1, 1, 4); }, {"[-1, 0)"});
  EXPECT_TRUE(toModelInput(ds, 3, 0, 4).empty());
}

TEST(Datasets, ToModelInputCentres28In32) {
  ImageDataset ds;
  ds.count = 1;
  ds.height = 28;
  ds.width = 28;
  ds.pixels.assign(28 * 28, 255);
  ds.labels = {0};
  std::vector<float> out = toModelInput(ds, 0, 1, 32);
  ASSERT_EQ(out.size(), 32u * 32u);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x) {
      bool inside = y >= 2 && y < 30 && x >= 2 && x < 30;
      EXPECT_EQ(out[size_t(y * 32 + x)], inside ? 1.0f : -1.0f) << y << " " << x;
    }
}

TEST(Datasets, LoadsLatents) {
  TempDir dir{"diffrt-datasets"};
  std::string path = dir.file("latents.safetensors");
  std::vector<float> latents(3 * 4 * 2 * 2);
  for (size_t i = 0; i < latents.size(); ++i)
    latents[i] = float(i) * 0.25f - 3.0f;
  std::vector<int64_t> labels = {7, 0, 999};
  SafetensorsWriter writer;
  writer.addF32("latents", {3, 4, 2, 2}, latents.data());
  writer.add("labels", DType::I64, {3}, labels.data());
  writer.write(path);
  LatentDataset ds = loadLatents(path);
  EXPECT_EQ(ds.count, 3);
  EXPECT_EQ(ds.channels, 4);
  EXPECT_EQ(ds.height, 2);
  EXPECT_EQ(ds.width, 2);
  EXPECT_EQ(ds.latents, latents);
  EXPECT_EQ(ds.labels, (std::vector<int32_t>{7, 0, 999}));

  // F16 latents with I32 labels.
  std::vector<uint16_t> half(2 * 1 * 1 * 3);
  for (size_t i = 0; i < half.size(); ++i)
    half[i] = floatToHalf(float(i) - 2.5f);
  std::vector<int32_t> labels32 = {4, 5};
  SafetensorsWriter halfWriter;
  halfWriter.add("latents", DType::F16, {2, 1, 1, 3}, half.data());
  halfWriter.add("labels", DType::I32, {2}, labels32.data());
  halfWriter.write(path);
  LatentDataset hs = loadLatents(path);
  EXPECT_EQ(hs.latents, (std::vector<float>{-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f}));
  EXPECT_EQ(hs.labels, labels32);
}

TEST(Datasets, LatentMismatchesGiveNamedErrors) {
  TempDir dir{"diffrt-datasets"};
  std::string path = dir.file("bad.safetensors");
  std::vector<float> f(2 * 4 * 2 * 2, 0.0f);
  std::vector<int64_t> l3 = {1, 2, 3};
  std::vector<int32_t> i32(16, 0);
  auto write = [&](const std::function<void(SafetensorsWriter &)> &fill) {
    SafetensorsWriter w;
    fill(w);
    w.write(path);
  };

  write([&](SafetensorsWriter &w) { w.addF32("latents", {2, 4, 2, 2}, f.data()); });
  expectError([&] { loadLatents(path); }, {path, "tensor 'labels'", "missing"});
  write([&](SafetensorsWriter &w) {
    w.addF32("latents", {2, 4, 2, 2}, f.data());
    w.add("labels", DType::I64, {3}, l3.data());
  });
  expectError([&] { loadLatents(path); },
              {path, "tensor 'labels' has 3 entries", "tensor 'latents' has 2"});
  write([&](SafetensorsWriter &w) {
    w.addF32("latents", {8, 2, 2}, f.data());
    w.add("labels", DType::I64, {3}, l3.data());
  });
  expectError([&] { loadLatents(path); }, {path, "tensor 'latents'", "rank 3"});
  write([&](SafetensorsWriter &w) {
    w.add("latents", DType::I32, {1, 4, 2, 2}, i32.data());
    w.add("labels", DType::I64, {1}, l3.data());
  });
  expectError([&] { loadLatents(path); }, {path, "tensor 'latents'", "dtype I32"});
  write([&](SafetensorsWriter &w) {
    w.addF32("latents", {2, 4, 2, 2}, f.data());
    w.addF32("labels", {2}, f.data());
  });
  expectError([&] { loadLatents(path); }, {path, "tensor 'labels'", "dtype F32"});
  write([&](SafetensorsWriter &w) {
    w.addF32("latents", {2, 4, 2, 2}, f.data());
    w.add("labels", DType::I64, {2, 1}, l3.data());
  });
  expectError([&] { loadLatents(path); }, {path, "tensor 'labels'", "rank 2"});
  std::vector<int64_t> negative = {0, -4};
  write([&](SafetensorsWriter &w) {
    w.addF32("latents", {2, 4, 2, 2}, f.data());
    w.add("labels", DType::I64, {2}, negative.data());
  });
  expectError([&] { loadLatents(path); }, {path, "tensor 'labels'[1] = -4"});
}
