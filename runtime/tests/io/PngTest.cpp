//===- PngTest.cpp - PNG encoder, decoder and image grids -----------------===//
//
// Bit-exact round trips, decoding of files built here with every row filter
// (by an independent filter implementation), the grid layout and pixel
// mapping of writeImageGrid, and named errors for damaged files.
//
//===----------------------------------------------------------------------===//

#include "../TestSupport.h"
#include "diffrt/Error.h"
#include "diffrt/Png.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <limits>
#include <random>

namespace fs = std::filesystem;
using namespace diffrt;
using namespace diffrt::testsupport;

namespace {

using Bytes = std::vector<unsigned char>;

Bytes readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void writeBytes(const std::string &path, const Bytes &bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char *>(bytes.data()), std::streamsize(bytes.size()));
}

void put32(Bytes &out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<unsigned char>(v >> shift));
}

/// Builds PNG files chunk by chunk, with correct CRCs unless told otherwise.
struct PngBuilder {
  Bytes bytes = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

  void chunk(const std::string &type, const Bytes &data) {
    put32(bytes, uint32_t(data.size()));
    Bytes typed(type.begin(), type.end());
    typed.insert(typed.end(), data.begin(), data.end());
    bytes.insert(bytes.end(), typed.begin(), typed.end());
    put32(bytes, uint32_t(crc32(0, typed.data(), uInt(typed.size()))));
  }
  void ihdr(uint32_t w, uint32_t h, int depth, int colour, int interlace = 0) {
    Bytes d;
    put32(d, w);
    put32(d, h);
    d.push_back(uint8_t(depth));
    d.push_back(uint8_t(colour));
    d.push_back(0);
    d.push_back(0);
    d.push_back(uint8_t(interlace));
    chunk("IHDR", d);
  }
};

Bytes zlibCompress(const Bytes &raw) {
  uLongf size = compressBound(uLong(raw.size()));
  Bytes out(size);
  EXPECT_EQ(compress2(out.data(), &size, raw.data(), uLong(raw.size()), 9), Z_OK);
  out.resize(size);
  return out;
}

/// Row filtering written from the PNG specification, independently of the
/// decoder under test.
Bytes filterRows(const Bytes &pixels, int width, int height, int channels,
                 const std::function<int(int)> &filterOfRow) {
  size_t stride = size_t(width) * size_t(channels);
  Bytes raw;
  for (int y = 0; y < height; ++y) {
    int f = filterOfRow(y);
    raw.push_back(uint8_t(f));
    for (size_t i = 0; i < stride; ++i) {
      int cur = pixels[y * stride + i];
      int left = i >= size_t(channels) ? pixels[y * stride + i - channels] : 0;
      int up = y > 0 ? pixels[(y - 1) * stride + i] : 0;
      int upLeft = (y > 0 && i >= size_t(channels)) ? pixels[(y - 1) * stride + i - channels] : 0;
      int pred = 0;
      if (f == 1)
        pred = left;
      else if (f == 2)
        pred = up;
      else if (f == 3)
        pred = (left + up) >> 1;
      else if (f == 4) {
        int p = left + up - upLeft;
        int pa = std::abs(p - left), pb = std::abs(p - up), pc = std::abs(p - upLeft);
        pred = (pa <= pb && pa <= pc) ? left : (pb <= pc ? up : upLeft);
      }
      raw.push_back(uint8_t(cur - pred));
    }
  }
  return raw;
}

Bytes randomPixels(size_t count, unsigned seed) {
  std::mt19937 gen(seed);
  Bytes out(count);
  for (auto &b : out)
    b = uint8_t(gen() & 0xff);
  return out;
}

} // namespace

TEST(Png, GrayRoundTripIsBitExact) {
  TempDir dir{"diffrt-png"};
  std::string path = dir.file("gray.png");
  Bytes pixels = randomPixels(37 * 23, 1);
  writePng(path, 37, 23, 1, pixels.data());
  Image image = readPng(path);
  EXPECT_EQ(image.width, 37);
  EXPECT_EQ(image.height, 23);
  EXPECT_EQ(image.channels, 1);
  EXPECT_EQ(image.pixels, pixels);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"gray.png"});
}

TEST(Png, RgbRoundTripIsBitExact) {
  TempDir dir{"diffrt-png"};
  std::string path = dir.file("rgb.png");
  Bytes pixels = randomPixels(64 * 5 * 3, 2);
  writePng(path, 64, 5, 3, pixels.data());
  Image image = readPng(path);
  EXPECT_EQ(image.width, 64);
  EXPECT_EQ(image.height, 5);
  EXPECT_EQ(image.channels, 3);
  EXPECT_EQ(image.pixels, pixels);
  // Re-writing replaces the file and leaves no temporary behind.
  writePng(path, 64, 5, 3, pixels.data());
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"rgb.png"});
}

TEST(Png, WriterRejectsBadArguments) {
  TempDir dir{"diffrt-png"};
  Bytes pixels(16);
  expectError([&] { writePng(dir.file("a.png"), 2, 2, 4, pixels.data()); },
              {"a.png", "4 channels"});
  expectError([&] { writePng(dir.file("b.png"), 0, 2, 1, pixels.data()); }, {"b.png", "0 x 2"});
  expectError([&] { writePng(dir.file("nodir/c.png"), 2, 2, 1, pixels.data()); },
              {"nodir/c.png"});
  EXPECT_TRUE(dir.entries().empty());
}

TEST(Png, DecodesAllFiveFiltersAndSplitIdat) {
  TempDir dir{"diffrt-png"};
  for (int channels : {1, 3}) {
    // Large enough that Paeth ties (which decide between b and c) occur.
    int width = 64, height = 40;
    Bytes pixels = randomPixels(size_t(width * height * channels), 3 + channels);
    Bytes compressed =
        zlibCompress(filterRows(pixels, width, height, channels, [](int y) { return y % 5; }));
    PngBuilder png;
    png.ihdr(uint32_t(width), uint32_t(height), 8, channels == 1 ? 0 : 2);
    png.chunk("tEXt", Bytes{'k', 0, 'v'}); // ancillary chunks are skipped
    size_t third = compressed.size() / 3;
    png.chunk("IDAT", Bytes(compressed.begin(), compressed.begin() + long(third)));
    png.chunk("IDAT", Bytes(compressed.begin() + long(third), compressed.end()));
    png.chunk("IEND", {});
    std::string path = dir.file("filters.png");
    writeBytes(path, png.bytes);
    Image image = readPng(path);
    EXPECT_EQ(image.channels, channels);
    EXPECT_EQ(image.pixels, pixels) << "channels " << channels;
  }
}

TEST(Png, DamagedFilesGiveNamedErrors) {
  TempDir dir{"diffrt-png"};
  std::string good = dir.file("good.png");
  Bytes pixels = randomPixels(8 * 8 * 3, 9);
  writePng(good, 8, 8, 3, pixels.data());
  Bytes bytes = readBytes(good);
  // Layout: signature (8), IHDR (8 + 13 + 4 = 25), then IDAT at offset 33.
  ASSERT_EQ(std::string(bytes.begin() + 37, bytes.begin() + 41), "IDAT");
  std::string path = dir.file("bad.png");

  Bytes flipped = bytes;
  flipped[45] ^= 0x40;
  writeBytes(path, flipped);
  expectError([&] { readPng(path); }, {path, "chunk 'IDAT' (#1)", "CRC mismatch"});

  Bytes truncated(bytes.begin(), bytes.begin() + 50);
  writeBytes(path, truncated);
  expectError([&] { readPng(path); }, {path, "truncated", "chunk 'IDAT' (#1)"});

  Bytes noEnd(bytes.begin(), bytes.end() - 12);
  writeBytes(path, noEnd);
  expectError([&] { readPng(path); }, {path, "truncated", "IEND"});

  Bytes badSignature = bytes;
  badSignature[1] = 'Q';
  writeBytes(path, badSignature);
  expectError([&] { readPng(path); }, {path, "signature"});

  expectError([&] { readPng(dir.file("absent.png")); }, {"absent.png", "cannot open"});
}

TEST(Png, InvalidHeadersAndPayloadsGiveNamedErrors) {
  TempDir dir{"diffrt-png"};
  std::string path = dir.file("h.png");
  Bytes rows = {0, 1, 2, 0, 3, 4}; // 2 x 2 gray, filter 0
  auto build = [&](const std::function<void(PngBuilder &)> &header, const Bytes &raw) {
    PngBuilder png;
    header(png);
    png.chunk("IDAT", zlibCompress(raw));
    png.chunk("IEND", {});
    writeBytes(path, png.bytes);
  };

  build([](PngBuilder &p) { p.ihdr(2, 2, 16, 0); }, rows);
  expectError([&] { readPng(path); }, {path, "chunk 'IHDR' (#0)", "bit depth 16"});
  build([](PngBuilder &p) { p.ihdr(2, 2, 8, 6); }, rows);
  expectError([&] { readPng(path); }, {path, "chunk 'IHDR'", "colour type 6"});
  build([](PngBuilder &p) { p.ihdr(2, 2, 8, 0, 1); }, rows);
  expectError([&] { readPng(path); }, {path, "chunk 'IHDR'", "Adam7"});
  build([](PngBuilder &p) { p.ihdr(0, 2, 8, 0); }, rows);
  expectError([&] { readPng(path); }, {path, "chunk 'IHDR'", "0 x 2"});
  build([](PngBuilder &p) { p.chunk("IDAT", {}); }, rows);
  expectError([&] { readPng(path); }, {path, "chunk 'IDAT' (#0)", "first chunk must be IHDR"});

  // IHDR says 2 x 3, the stream holds 2 rows.
  build([](PngBuilder &p) { p.ihdr(2, 3, 8, 0); }, rows);
  expectError([&] { readPng(path); }, {path, "chunk 'IDAT'", "6 bytes", "needs 9"});
  // One byte too many.
  Bytes longer = rows;
  longer.push_back(7);
  build([](PngBuilder &p) { p.ihdr(2, 2, 8, 0); }, longer);
  expectError([&] { readPng(path); }, {path, "chunk 'IDAT'", "more than the 6 bytes"});
  // A filter type outside 0..4.
  Bytes badFilter = {0, 1, 2, 7, 3, 4};
  build([](PngBuilder &p) { p.ihdr(2, 2, 8, 0); }, badFilter);
  expectError([&] { readPng(path); }, {path, "chunk 'IDAT'", "row 1", "filter type 7"});

  // Valid CRCs around a stream that is not zlib.
  PngBuilder garbage;
  garbage.ihdr(2, 2, 8, 0);
  garbage.chunk("IDAT", Bytes{0x12, 0x34, 0x56, 0x78});
  garbage.chunk("IEND", {});
  writeBytes(path, garbage.bytes);
  expectError([&] { readPng(path); }, {path, "chunk 'IDAT'", "corrupt zlib stream"});

  // A zlib stream cut short.
  Bytes stream = zlibCompress(randomPixels(200, 5));
  PngBuilder cut;
  cut.ihdr(199, 1, 8, 0);
  cut.chunk("IDAT", Bytes(stream.begin(), stream.begin() + long(stream.size() / 2)));
  cut.chunk("IEND", {});
  writeBytes(path, cut.bytes);
  expectError([&] { readPng(path); }, {path, "chunk 'IDAT'", "truncated"});

  // Unknown critical chunk.
  build(
      [](PngBuilder &p) {
        p.ihdr(2, 2, 8, 0);
        p.chunk("ABCD", {1});
      },
      rows);
  expectError([&] { readPng(path); }, {path, "chunk 'ABCD' (#1)", "critical"});
}

TEST(Png, GridGeometryAndPixelPlacement) {
  TempDir dir{"diffrt-png"};
  std::string path = dir.file("grid.png");
  // Three 2 x 3 gray images, two columns, padding 1: the PNG is
  // (2 * (3 + 1) + 1) x (2 * (2 + 1) + 1) = 9 x 7.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> images = {
      -1.0f, 1.0f, 0.0f, 0.5f, -0.5f, 2.0f, // image 0
      0.2f,  -3.0f, nan, 1.0f, 1.0f, 1.0f,  // image 1
      0.0f,  0.0f, 0.0f, -1.0f, 0.99f, 0.1f // image 2
  };
  writeImageGrid(path, images.data(), 3, 1, 2, 3, 2, 1);
  Image grid = readPng(path);
  ASSERT_EQ(grid.width, 9);
  ASSERT_EQ(grid.height, 7);
  ASSERT_EQ(grid.channels, 1);
  auto expectedByte = [](float x) -> int {
    if (std::isnan(x))
      return 0;
    double v = std::min(1.0, std::max(0.0, (double(x) + 1.0) / 2.0));
    return int(std::floor(v * 255.0 + 0.5));
  };
  // Spot values of round(clamp((x + 1) / 2, 0, 1) * 255).
  EXPECT_EQ(expectedByte(0.0f), 128);
  EXPECT_EQ(expectedByte(0.5f), 191);
  EXPECT_EQ(expectedByte(-0.5f), 64);
  std::vector<int> expected(9 * 7, 0);
  for (int i = 0; i < 3; ++i) {
    int top = 1 + (i / 2) * 3, left = 1 + (i % 2) * 4;
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x)
        expected[size_t((top + y) * 9 + left + x)] = expectedByte(images[size_t(i * 6 + y * 3 + x)]);
  }
  for (int y = 0; y < 7; ++y)
    for (int x = 0; x < 9; ++x)
      EXPECT_EQ(int(grid.pixels[size_t(y * 9 + x)]), expected[size_t(y * 9 + x)])
          << "pixel (" << x << ", " << y << ")";
  // Explicit anchors: first image's top-left is black, its second pixel white.
  EXPECT_EQ(grid.pixels[1 * 9 + 1], 0);
  EXPECT_EQ(grid.pixels[1 * 9 + 2], 255);
  EXPECT_EQ(grid.pixels[2 * 9 + 1], 191);
  // Image 2 starts the second row at (1, 4).
  EXPECT_EQ(grid.pixels[4 * 9 + 1], 128);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"grid.png"});
}

TEST(Png, RgbGridKeepsChannelsAndColumnsShrinkToN) {
  TempDir dir{"diffrt-png"};
  std::string path = dir.file("rgb.png");
  // Two 1 x 1 RGB images in a grid asked for 5 columns: only 2 are used.
  std::vector<float> images = {-1.0f, 0.0f, 1.0f, 1.0f, -1.0f, 0.5f};
  writeImageGrid(path, images.data(), 2, 3, 1, 1, 5, 2);
  Image grid = readPng(path);
  ASSERT_EQ(grid.width, 2 * 3 + 2);
  ASSERT_EQ(grid.height, 1 * 3 + 2);
  ASSERT_EQ(grid.channels, 3);
  auto px = [&](int x, int y, int ch) { return int(grid.pixels[size_t((y * grid.width + x) * 3 + ch)]); };
  EXPECT_EQ(px(2, 2, 0), 0);
  EXPECT_EQ(px(2, 2, 1), 128);
  EXPECT_EQ(px(2, 2, 2), 255);
  EXPECT_EQ(px(5, 2, 0), 255);
  EXPECT_EQ(px(5, 2, 1), 0);
  EXPECT_EQ(px(5, 2, 2), 191);
  int nonZero = 0;
  for (uint8_t b : grid.pixels)
    nonZero += b != 0;
  EXPECT_EQ(nonZero, 4); // everything else is padding
}

TEST(Png, LatentPreviewNormalisesChannelsZeroToTwo) {
  TempDir dir{"diffrt-png"};
  std::string path = dir.file("latent.png");
  // One 1 x 2 latent with 4 channels. Channels 0..2 span [-4, 4]; channel 3
  // is huge and must influence neither the picture nor the normalisation.
  std::vector<float> latent = {-4.0f, 4.0f,  // channel 0
                               0.0f,  2.0f,  // channel 1
                               -2.0f, 4.0f,  // channel 2
                               1e6f,  -1e6f};
  writeImageGrid(path, latent.data(), 1, 4, 1, 2, 1, 0);
  Image grid = readPng(path);
  ASSERT_EQ(grid.width, 2);
  ASSERT_EQ(grid.height, 1);
  ASSERT_EQ(grid.channels, 3);
  // x -> x / 4 in [-1, 1], then the usual byte mapping.
  std::vector<uint8_t> expected = {0, 128, 64, 255, 191, 255};
  EXPECT_EQ(grid.pixels, expected);

  std::vector<float> flat(4 * 4, 3.0f);
  writeImageGrid(path, flat.data(), 1, 4, 2, 2, 1, 0);
  Image gray = readPng(path);
  for (uint8_t b : gray.pixels)
    EXPECT_EQ(b, 128);
}

TEST(Png, GridRejectsBadArguments) {
  TempDir dir{"diffrt-png"};
  std::vector<float> data(64, 0.0f);
  expectError([&] { writeImageGrid(dir.file("g.png"), data.data(), 1, 2, 2, 2, 1); },
              {"g.png", "2 channels"});
  expectError([&] { writeImageGrid(dir.file("g.png"), data.data(), 0, 1, 2, 2, 1); },
              {"g.png", "0 images"});
  expectError([&] { writeImageGrid(dir.file("g.png"), data.data(), 1, 1, 2, 2, 0); },
              {"g.png", "0 columns"});
  expectError([&] { writeImageGrid(dir.file("g.png"), data.data(), 1, 1, 2, 2, 1, -1); },
              {"g.png", "padding -1"});
  EXPECT_TRUE(dir.entries().empty());
}
