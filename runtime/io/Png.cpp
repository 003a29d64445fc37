//===- Png.cpp - minimal PNG encoder and decoder for sample images --------===//
//
// Encoder: IHDR, IDAT (zlib, filter 0 on every row), IEND. Decoder: verifies
// the signature and every chunk's CRC, validates IHDR, inflates the
// concatenated IDAT stream to exactly the size IHDR implies and undoes the
// five row filters. Chunk-level errors name the chunk type and its index.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Png.h"

#include "AtomicFile.h"
#include "diffrt/Error.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

namespace diffrt {
namespace {

constexpr unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
// PNG caps chunk lengths and dimensions at 2^31 - 1.
constexpr uint32_t kPngMax = 0x7fffffffu;
// Bytes per IDAT chunk the encoder emits; readers handle any split, and
// moderate chunks keep streaming decoders' buffers small.
constexpr size_t kIdatChunk = 1u << 20;
// Decoded images larger than this are refused rather than allocated: no
// sample grid comes near it, a corrupt IHDR easily does.
constexpr uint64_t kMaxDecodedBytes = 1ull << 31;

void putU32(std::vector<unsigned char> &out, uint32_t v) {
  out.push_back(static_cast<unsigned char>(v >> 24));
  out.push_back(static_cast<unsigned char>(v >> 16));
  out.push_back(static_cast<unsigned char>(v >> 8));
  out.push_back(static_cast<unsigned char>(v));
}

uint32_t getU32(const unsigned char *p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

void appendChunk(std::vector<unsigned char> &out, const char type[4], const unsigned char *data,
                 size_t size) {
  putU32(out, static_cast<uint32_t>(size));
  size_t typeAt = out.size();
  out.insert(out.end(), type, type + 4);
  if (size)
    out.insert(out.end(), data, data + size);
  uLong crc = crc32(0L, out.data() + typeAt, static_cast<uInt>(4));
  if (size)
    crc = crc32_z(crc, data, size);
  putU32(out, static_cast<uint32_t>(crc));
}

std::string hex32(uint32_t v) {
  char buffer[16];
  std::snprintf(buffer, sizeof(buffer), "0x%08x", v);
  return buffer;
}

uint8_t paeth(int a, int b, int c) {
  int p = a + b - c;
  int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc)
    return static_cast<uint8_t>(a);
  return static_cast<uint8_t>(pb <= pc ? b : c);
}

std::vector<unsigned char> readWholeFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail(path, ": cannot open: ", std::strerror(errno));
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  if (in.bad())
    fail(path, ": read error");
  return bytes;
}

uint8_t toByte(double x) {
  if (std::isnan(x))
    return 0;
  double v = std::clamp((x + 1.0) / 2.0, 0.0, 1.0);
  return static_cast<uint8_t>(std::floor(v * 255.0 + 0.5));
}

} // namespace

void writePng(const std::string &path, int width, int height, int channels,
              const uint8_t *pixels) {
  if (width < 1 || height < 1)
    fail(path, ": PNG size ", width, " x ", height, " must be at least 1 x 1");
  if (channels != 1 && channels != 3)
    fail(path, ": PNG with ", channels, " channels; only 1 (gray) and 3 (RGB) are written");
  if (pixels == nullptr)
    fail(path, ": null pixel data");
  size_t rowBytes = static_cast<size_t>(width) * static_cast<size_t>(channels);
  size_t rawSize = static_cast<size_t>(height) * (rowBytes + 1);
  std::vector<unsigned char> raw(rawSize);
  for (int y = 0; y < height; ++y) {
    unsigned char *row = raw.data() + static_cast<size_t>(y) * (rowBytes + 1);
    row[0] = 0; // filter type None
    std::memcpy(row + 1, pixels + static_cast<size_t>(y) * rowBytes, rowBytes);
  }
  uLongf compressedSize = compressBound(static_cast<uLong>(rawSize));
  std::vector<unsigned char> compressed(compressedSize);
  int rc = compress2(compressed.data(), &compressedSize, raw.data(), static_cast<uLong>(rawSize),
                     Z_DEFAULT_COMPRESSION);
  if (rc != Z_OK)
    fail(path, ": zlib compression of ", rawSize, " bytes failed (zlib error ", rc, ")");

  std::vector<unsigned char> file(kSignature, kSignature + 8);
  std::vector<unsigned char> ihdr;
  putU32(ihdr, static_cast<uint32_t>(width));
  putU32(ihdr, static_cast<uint32_t>(height));
  ihdr.push_back(8);                         // bit depth
  ihdr.push_back(channels == 1 ? 0 : 2);     // colour type: gray or truecolour
  ihdr.push_back(0);                         // compression: deflate
  ihdr.push_back(0);                         // filter method: adaptive
  ihdr.push_back(0);                         // no interlace
  appendChunk(file, "IHDR", ihdr.data(), ihdr.size());
  for (size_t at = 0; at < compressedSize; at += kIdatChunk)
    appendChunk(file, "IDAT", compressed.data() + at,
                std::min<size_t>(kIdatChunk, compressedSize - at));
  appendChunk(file, "IEND", nullptr, 0);
  io::writeFileAtomically(path, file.data(), file.size());
}

Image readPng(const std::string &path) {
  std::vector<unsigned char> bytes = readWholeFile(path);
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kSignature, 8) != 0)
    fail(path, ": not a PNG file (the first 8 bytes are not the PNG signature)");

  Image image;
  bool haveHeader = false, sawEnd = false;
  bool idatOpen = false, idatClosed = false;
  std::vector<unsigned char> idat;
  size_t pos = 8;
  for (int index = 0; !sawEnd; ++index) {
    if (pos == bytes.size())
      fail(path, ": truncated: the file ends after ", index, " chunks without an IEND chunk");
    if (bytes.size() - pos < 8)
      fail(path, ": truncated: chunk #", index, " at offset ", pos, " has only ",
           bytes.size() - pos, " of its 8 header bytes");
    uint32_t length = getU32(bytes.data() + pos);
    std::string type(reinterpret_cast<const char *>(bytes.data() + pos + 4), 4);
    std::string name = "chunk '" + type + "' (#" + std::to_string(index) + ")";
    for (char ch : type)
      if (!std::isalpha(static_cast<unsigned char>(ch)))
        fail(path, ": chunk #", index, " at offset ", pos, " has an invalid type (bytes ",
             hex32(getU32(bytes.data() + pos + 4)), ")");
    if (length > kPngMax)
      fail(path, ": ", name, ": length ", length, " exceeds the PNG limit 2^31 - 1");
    if (bytes.size() - pos - 8 < uint64_t(length) + 4)
      fail(path, ": truncated: ", name, " at offset ", pos, " declares ", length,
           " data bytes + 4 CRC bytes but the file has only ", bytes.size() - pos - 8,
           " bytes left");
    const unsigned char *data = bytes.data() + pos + 8;
    uint32_t stored = getU32(data + length);
    uint32_t computed =
        static_cast<uint32_t>(crc32_z(crc32(0L, bytes.data() + pos + 4, 4), data, length));
    if (stored != computed)
      fail(path, ": ", name, ": CRC mismatch (stored ", hex32(stored), ", computed ",
           hex32(computed), ")");
    pos += 12 + size_t(length);

    if (index == 0 && type != "IHDR")
      fail(path, ": ", name, ": the first chunk must be IHDR");
    if (type == "IHDR") {
      if (haveHeader)
        fail(path, ": ", name, ": second IHDR chunk");
      if (length != 13)
        fail(path, ": ", name, ": length ", length, ", expected 13");
      uint32_t width = getU32(data), height = getU32(data + 4);
      int depth = data[8], colour = data[9], compression = data[10], filter = data[11],
          interlace = data[12];
      if (width == 0 || height == 0 || width > kPngMax || height > kPngMax)
        fail(path, ": ", name, ": size ", width, " x ", height,
             " is outside 1 .. 2^31 - 1 in each dimension");
      if (colour != 0 && colour != 2)
        fail(path, ": ", name, ": colour type ", colour,
             " is not supported (only 0 = gray and 2 = RGB)");
      if (depth != 8)
        fail(path, ": ", name, ": bit depth ", depth, " is not supported (only 8)");
      if (compression != 0)
        fail(path, ": ", name, ": compression method ", compression, " is invalid (must be 0)");
      if (filter != 0)
        fail(path, ": ", name, ": filter method ", filter, " is invalid (must be 0)");
      if (interlace == 1)
        fail(path, ": ", name, ": Adam7 interlacing is not supported");
      if (interlace != 0)
        fail(path, ": ", name, ": interlace method ", interlace, " is invalid (must be 0 or 1)");
      image.width = static_cast<int>(width);
      image.height = static_cast<int>(height);
      image.channels = colour == 0 ? 1 : 3;
      uint64_t decoded = uint64_t(width) * height * uint64_t(image.channels);
      if (decoded > kMaxDecodedBytes)
        fail(path, ": ", name, ": ", width, " x ", height, " x ", image.channels, " = ", decoded,
             " bytes exceeds the decoder limit of ", kMaxDecodedBytes, " bytes");
      haveHeader = true;
    } else if (type == "IDAT") {
      if (idatClosed)
        fail(path, ": ", name, ": IDAT chunks must be consecutive");
      idatOpen = true;
      idat.insert(idat.end(), data, data + length);
    } else {
      if (idatOpen) {
        idatOpen = false;
        idatClosed = true;
      }
      if (type == "IEND") {
        sawEnd = true;
      } else if (type == "PLTE") {
        // A suggested palette is legal (and ignorable) for truecolour only.
        if (image.channels == 1)
          fail(path, ": ", name, ": a palette is not allowed in a gray image");
      } else if (std::isupper(static_cast<unsigned char>(type[0]))) {
        fail(path, ": ", name, ": unsupported critical chunk");
      }
      // Ancillary chunks (lower-case first letter) carry nothing we need.
    }
  }
  if (idat.empty())
    fail(path, ": no IDAT data");

  size_t rowBytes = size_t(image.width) * size_t(image.channels);
  size_t expected = size_t(image.height) * (rowBytes + 1);
  // One spare byte lets us tell "exactly right" from "too long".
  std::vector<unsigned char> raw(expected + 1);
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK)
    fail(path, ": zlib inflateInit failed");
  zs.next_in = idat.data();
  zs.avail_in = 0;
  zs.next_out = raw.data();
  zs.avail_out = 0;
  size_t inLeft = idat.size(), outLeft = raw.size();
  int rc = Z_OK;
  while (rc == Z_OK) {
    // avail_in/avail_out are 32-bit; feed in slices.
    if (zs.avail_in == 0 && inLeft) {
      zs.avail_in = static_cast<uInt>(std::min<size_t>(inLeft, 1u << 30));
      inLeft -= zs.avail_in;
    }
    if (zs.avail_out == 0 && outLeft) {
      zs.avail_out = static_cast<uInt>(std::min<size_t>(outLeft, 1u << 30));
      outLeft -= zs.avail_out;
    }
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc == Z_BUF_ERROR && (zs.avail_in || inLeft) && (zs.avail_out || outLeft))
      rc = Z_OK;
  }
  size_t produced = zs.total_out;
  std::string zmsg = zs.msg ? zs.msg : "";
  inflateEnd(&zs);
  std::string geometry = std::to_string(image.width) + " x " + std::to_string(image.height) +
                         " x " + std::to_string(image.channels);
  if (produced > expected)
    fail(path, ": chunk 'IDAT': decompresses to more than the ", expected,
         " bytes that IHDR ", geometry, " implies");
  if (rc == Z_BUF_ERROR)
    fail(path, ": chunk 'IDAT': the zlib stream is truncated after ", produced, " of ", expected,
         " bytes");
  if (rc != Z_STREAM_END)
    fail(path, ": chunk 'IDAT': corrupt zlib stream (zlib error ", rc,
         zmsg.empty() ? "" : ": ", zmsg, ")");
  if (produced != expected)
    fail(path, ": chunk 'IDAT': decompresses to ", produced, " bytes but IHDR ", geometry,
         " needs ", expected);

  image.pixels.resize(size_t(image.height) * rowBytes);
  size_t bpp = static_cast<size_t>(image.channels);
  for (int y = 0; y < image.height; ++y) {
    const unsigned char *src = raw.data() + size_t(y) * (rowBytes + 1);
    unsigned char *dst = image.pixels.data() + size_t(y) * rowBytes;
    const unsigned char *up = y ? dst - rowBytes : nullptr;
    int filter = src[0];
    ++src;
    for (size_t i = 0; i < rowBytes; ++i) {
      int a = i >= bpp ? dst[i - bpp] : 0;
      int b = up ? up[i] : 0;
      int c = (up && i >= bpp) ? up[i - bpp] : 0;
      int predictor;
      switch (filter) {
      case 0: predictor = 0; break;
      case 1: predictor = a; break;
      case 2: predictor = b; break;
      case 3: predictor = (a + b) / 2; break;
      case 4: predictor = paeth(a, b, c); break;
      default:
        fail(path, ": chunk 'IDAT': row ", y, " has filter type ", filter,
             " (valid types are 0..4)");
      }
      dst[i] = static_cast<unsigned char>(src[i] + predictor);
    }
  }
  return image;
}

void writeImageGrid(const std::string &path, const float *images, int64_t n, int64_t c,
                    int64_t h, int64_t w, int64_t columns, int64_t padding) {
  if (c != 1 && c != 3 && c != 4)
    fail(path, ": image grid with ", c,
         " channels; expected 1 (gray), 3 (RGB) or 4 (latent preview)");
  if (n < 1 || h < 1 || w < 1)
    fail(path, ": image grid of ", n, " images of ", h, " x ", w,
         " needs at least one image of at least 1 x 1");
  if (columns < 1)
    fail(path, ": image grid with ", columns, " columns; need at least 1");
  if (padding < 0)
    fail(path, ": image grid padding ", padding, " is negative");
  if (images == nullptr)
    fail(path, ": null image data");
  int64_t cols = std::min(columns, n);
  int64_t rows = (n + cols - 1) / cols;
  // Computed in double first so that absurd arguments cannot overflow.
  double gridW = double(cols) * double(w + padding) + double(padding);
  double gridH = double(rows) * double(h + padding) + double(padding);
  if (gridW > kPngMax || gridH > kPngMax || gridW * gridH * 3 > double(kMaxDecodedBytes))
    fail(path, ": image grid of ", n, " images of ", h, " x ", w, " in ", cols,
         " columns would be ", gridW, " x ", gridH, " pixels, too large");
  int64_t width = cols * (w + padding) + padding;
  int64_t height = rows * (h + padding) + padding;
  int outChannels = c == 1 ? 1 : 3;
  int64_t shown = c == 1 ? 1 : 3;
  int64_t plane = h * w;

  double offset = 0.0, scale = 1.0;
  if (c == 4) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t ch = 0; ch < shown; ++ch) {
        const float *p = images + (i * c + ch) * plane;
        for (int64_t k = 0; k < plane; ++k)
          if (std::isfinite(p[k])) {
            lo = std::min(lo, double(p[k]));
            hi = std::max(hi, double(p[k]));
          }
      }
    if (hi > lo) {
      // x -> 2 (x - lo) / (hi - lo) - 1 maps [lo, hi] onto [-1, 1].
      scale = 2.0 / (hi - lo);
      offset = -lo * scale - 1.0;
    } else {
      // A constant (or all non-finite) latent has no range to stretch: show
      // it as mid-gray.
      scale = 0.0;
      offset = 0.0;
    }
  }

  std::vector<uint8_t> pixels(size_t(width) * size_t(height) * size_t(outChannels), 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t top = padding + (i / cols) * (h + padding);
    int64_t left = padding + (i % cols) * (w + padding);
    for (int64_t ch = 0; ch < shown; ++ch) {
      const float *src = images + (i * c + ch) * plane;
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          double value = src[y * w + x];
          if (c == 4 && std::isfinite(value))
            value = value * scale + offset;
          size_t at = (size_t(top + y) * size_t(width) + size_t(left + x)) * size_t(outChannels) +
                      size_t(ch);
          pixels[at] = toByte(value);
        }
    }
  }
  writePng(path, static_cast<int>(width), static_cast<int>(height), outChannels, pixels.data());
}

} // namespace diffrt
