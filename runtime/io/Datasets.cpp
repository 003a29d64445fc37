//===- Datasets.cpp - IDX image sets and precomputed latents --------------===//
//
// IDX files are read through zlib's gz* interface, which decompresses gzip
// and passes other content through unchanged, so one code path serves
// "train-images-idx3-ubyte.gz" and an uncompressed copy alike.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Datasets.h"

#include "diffrt/Error.h"
#include "diffrt/Safetensors.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>

namespace diffrt {
namespace {

constexpr uint32_t kIdxImagesMagic = 0x00000803;
constexpr uint32_t kIdxLabelsMagic = 0x00000801;
constexpr int kIdxUnsignedByte = 0x08;

std::vector<uint8_t> readMaybeGzipped(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    fail(path, ": cannot open: ", std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    fail(path, ": not a regular file");
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr)
    fail(path, ": cannot open: ", errno ? std::strerror(errno) : "zlib out of memory");
  std::vector<uint8_t> bytes;
  constexpr unsigned kChunk = 1u << 20;
  for (;;) {
    size_t at = bytes.size();
    bytes.resize(at + kChunk);
    int n = gzread(file, bytes.data() + at, kChunk);
    int err = Z_OK;
    const char *message = gzerror(file, &err);
    if (n < 0 || err != Z_OK) {
      std::string text = err == Z_ERRNO ? std::strerror(errno) : (message ? message : "");
      // zlib prefixes its messages with the path, which we already print.
      if (text.rfind(path + ": ", 0) == 0)
        text.erase(0, path.size() + 2);
      gzclose_r(file);
      fail(path, ": read failed after ", at + std::max(n, 0),
           " decompressed bytes: ", text);
    }
    bytes.resize(at + static_cast<size_t>(n));
    if (n == 0)
      break;
  }
  gzclose_r(file);
  return bytes;
}

struct IdxFile {
  std::vector<uint32_t> dims;
  std::vector<uint8_t> bytes;
  size_t payloadOffset = 0;
};

uint32_t bigEndianU32(const uint8_t *p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

IdxFile readIdx(const std::string &path, uint32_t expectedMagic, const char *what) {
  IdxFile idx;
  idx.bytes = readMaybeGzipped(path);
  const std::vector<uint8_t> &b = idx.bytes;
  unsigned expectedDims = expectedMagic & 0xffu;
  if (b.size() < 4)
    fail(path, ": ", b.size(), " bytes (after decompression) is too short for an IDX magic number");
  uint32_t magic = bigEndianU32(b.data());
  char magicText[16];
  std::snprintf(magicText, sizeof(magicText), "0x%08x", magic);
  char expectedText[16];
  std::snprintf(expectedText, sizeof(expectedText), "0x%08x", expectedMagic);
  if ((magic >> 16) != 0 || ((magic >> 8) & 0xffu) != kIdxUnsignedByte)
    fail(path, ": magic ", magicText, " is not an IDX unsigned-byte file (expected ",
         expectedText, " for ", what, ")");
  unsigned dims = magic & 0xffu;
  if (dims != expectedDims)
    fail(path, ": magic ", magicText, " declares ", dims, " dimensions but ", what, " need ",
         expectedDims, " (magic ", expectedText, ")");
  size_t headerBytes = 4 + 4 * size_t(dims);
  if (b.size() < headerBytes)
    fail(path, ": truncated header: ", b.size(), " bytes, but ", dims,
         " dimensions need a header of ", headerBytes, " bytes");
  uint64_t payload = 1;
  bool overflow = false;
  std::string shape;
  for (unsigned d = 0; d < dims; ++d) {
    idx.dims.push_back(bigEndianU32(b.data() + 4 + 4 * d));
    overflow |= __builtin_mul_overflow(payload, uint64_t(idx.dims.back()), &payload);
    shape += (d ? " x " : "") + std::to_string(idx.dims[d]);
  }
  if (overflow)
    fail(path, ": dimensions ", shape, " describe more than 2^64 bytes");
  uint64_t actual = b.size() - headerBytes;
  if (actual < payload)
    fail(path, ": truncated: dimensions ", shape, " need ", payload,
         " payload bytes but the file has ", actual);
  if (actual > payload)
    fail(path, ": dimensions ", shape, " need ", payload, " payload bytes but the file has ",
         actual, " (", actual - payload, " trailing bytes)");
  idx.payloadOffset = headerBytes;
  return idx;
}

/// Empty when `path` is a regular file, otherwise why it is not usable.
std::string whyNotAFile(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return std::strerror(errno);
  return S_ISREG(st.st_mode) ? std::string() : std::string("not a regular file");
}

} // namespace

ImageDataset loadIdx(const std::string &imagesPath, const std::string &labelsPath) {
  IdxFile images = readIdx(imagesPath, kIdxImagesMagic, "images");
  IdxFile labels = readIdx(labelsPath, kIdxLabelsMagic, "labels");
  if (images.dims[0] != labels.dims[0])
    fail(imagesPath, ": ", images.dims[0], " images, but ", labelsPath, " has ", labels.dims[0],
         " labels");
  ImageDataset ds;
  ds.count = images.dims[0];
  ds.height = images.dims[1];
  ds.width = images.dims[2];
  ds.pixels.assign(images.bytes.begin() + images.payloadOffset, images.bytes.end());
  images.bytes = {};
  ds.labels.reserve(labels.dims[0]);
  int32_t maxLabel = -1;
  // Labels are unsigned bytes, so every label is < 256 by construction.
  for (size_t i = labels.payloadOffset; i < labels.bytes.size(); ++i) {
    int32_t label = labels.bytes[i];
    ds.labels.push_back(label);
    maxLabel = std::max(maxLabel, label);
  }
  ds.numClasses = maxLabel + 1;
  return ds;
}

ImageDataset loadFashionMnist(const std::string &dir, const std::string &split) {
  if (split != "train" && split != "t10k")
    fail("Fashion-MNIST: split '", split, "' is unknown; use \"train\" or \"t10k\"");
  std::string images = dir + "/" + split + "-images-idx3-ubyte.gz";
  std::string labels = dir + "/" + split + "-labels-idx1-ubyte.gz";
  for (const std::string &path : {images, labels}) {
    std::string why = whyNotAFile(path);
    if (!why.empty())
      fail(path, ": Fashion-MNIST file not found (", why,
           "); the Debian package dataset-fashion-mnist provides it");
  }
  return loadIdx(images, labels);
}

std::vector<float> toModelInput(const ImageDataset &ds, int64_t begin, int64_t count,
                                int64_t padTo) {
  if (begin < 0 || count < 0 || begin > ds.count || count > ds.count - begin)
    fail("toModelInput: images [", begin, ", ", begin + count, ") are outside the dataset of ",
         ds.count, " images");
  if (padTo < ds.height || padTo < ds.width)
    fail("toModelInput: padTo ", padTo, " is smaller than the ", ds.height, " x ", ds.width,
         " images");
  if (ds.pixels.size() != size_t(ds.count * ds.height * ds.width))
    fail("toModelInput: the dataset holds ", ds.pixels.size(), " pixels but ", ds.count, " x ",
         ds.height, " x ", ds.width, " images need ", ds.count * ds.height * ds.width);
  float table[256];
  for (int p = 0; p < 256; ++p)
    table[p] = static_cast<float>(p / 127.5 - 1.0);
  int64_t top = (padTo - ds.height) / 2, left = (padTo - ds.width) / 2;
  int64_t plane = padTo * padTo;
  std::vector<float> out(size_t(count * plane), -1.0f);
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t *src = ds.pixels.data() + (begin + i) * ds.height * ds.width;
    float *dst = out.data() + i * plane;
    for (int64_t y = 0; y < ds.height; ++y)
      for (int64_t x = 0; x < ds.width; ++x)
        dst[(top + y) * padTo + left + x] = table[src[y * ds.width + x]];
  }
  return out;
}

LatentDataset loadLatents(const std::string &safetensorsPath) {
  SafetensorsFile file = SafetensorsFile::open(safetensorsPath);
  for (const char *name : {"latents", "labels"})
    if (!file.contains(name))
      fail(safetensorsPath, ": tensor '", name,
           "' is missing; a latent dataset holds 'latents' (N x C x H x W, float) and 'labels' "
           "(N, I32 or I64)");
  const TensorInfo &latents = file.info("latents");
  const TensorInfo &labels = file.info("labels");
  if (latents.shape.size() != 4)
    fail(safetensorsPath, ": tensor 'latents' has rank ", latents.shape.size(),
         "; expected 4 (N x C x H x W)");
  if (latents.dtype != DType::F32 && latents.dtype != DType::F16 &&
      latents.dtype != DType::BF16 && latents.dtype != DType::F64)
    fail(safetensorsPath, ": tensor 'latents' has dtype ", dtypeName(latents.dtype),
         "; expected F32, F16, BF16 or F64");
  if (labels.shape.size() != 1)
    fail(safetensorsPath, ": tensor 'labels' has rank ", labels.shape.size(), "; expected 1 (N)");
  if (labels.dtype != DType::I32 && labels.dtype != DType::I64)
    fail(safetensorsPath, ": tensor 'labels' has dtype ", dtypeName(labels.dtype),
         "; expected I32 or I64");
  if (labels.shape[0] != latents.shape[0])
    fail(safetensorsPath, ": tensor 'labels' has ", labels.shape[0],
         " entries but tensor 'latents' has ", latents.shape[0]);

  LatentDataset ds;
  ds.count = latents.shape[0];
  ds.channels = latents.shape[1];
  ds.height = latents.shape[2];
  ds.width = latents.shape[3];
  ds.latents = file.readF32("latents");
  ds.labels.resize(size_t(ds.count));
  const unsigned char *raw = static_cast<const unsigned char *>(file.data("labels"));
  for (int64_t i = 0; i < ds.count; ++i) {
    int64_t value;
    if (labels.dtype == DType::I32) {
      int32_t v32;
      std::memcpy(&v32, raw + 4 * i, 4);
      value = v32;
    } else {
      std::memcpy(&value, raw + 8 * i, 8);
    }
    if (value < 0 || value > INT32_MAX)
      fail(safetensorsPath, ": tensor 'labels'[", i, "] = ", value,
           " is not a class index (must be in 0 .. 2^31 - 1)");
    ds.labels[size_t(i)] = static_cast<int32_t>(value);
  }
  return ds;
}

} // namespace diffrt
