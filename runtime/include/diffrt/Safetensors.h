//===- Safetensors.h - reading and writing .safetensors files ---*- C++ -*-===//
//
// Checkpoints, precomputed latents and exported weights travel as
// safetensors: an 8-byte little-endian header length, a JSON header naming
// each tensor's dtype, shape and byte range, then the packed data. The reader
// memory-maps the file and validates every header entry up front, so that a
// later data() or readF32() cannot run off the mapping; the writer produces
// a deterministic file (sorted keys, data packed in key order) and replaces
// the destination atomically.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_SAFETENSORS_H
#define DIFFRT_SAFETENSORS_H

#include "diffrt/DType.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace diffrt {

struct TensorInfo {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  size_t bytes = 0;
  /// Offset of the first byte inside the data section (after the header).
  size_t offset = 0;
};

/// A validated, read-only view of a safetensors file. The tensors' bytes stay
/// in the page cache and are only touched when read.
class SafetensorsFile {
public:
  /// Maps and validates `path`; every malformation is a diffrt::Error naming
  /// the file, the tensor or field, and the numbers involved.
  static SafetensorsFile open(const std::string &path);

  SafetensorsFile(SafetensorsFile &&other) noexcept;
  SafetensorsFile &operator=(SafetensorsFile &&other) noexcept;
  SafetensorsFile(const SafetensorsFile &) = delete;
  SafetensorsFile &operator=(const SafetensorsFile &) = delete;
  ~SafetensorsFile();

  /// Tensor names in lexicographic order.
  std::vector<std::string> names() const;
  bool contains(const std::string &name) const;
  /// Unknown names are an error that suggests the closest existing names.
  const TensorInfo &info(const std::string &name) const;
  /// Pointer into the mapping; valid while this object lives. Not aligned in
  /// general (safetensors does not require it), so read through memcpy.
  const void *data(const std::string &name) const;
  /// The tensor converted to float32; F32, F16, BF16 and F64 are accepted.
  std::vector<float> readF32(const std::string &name) const;
  std::map<std::string, std::string> metadata() const;
  const std::string &path() const { return path_; }

private:
  SafetensorsFile() = default;
  void release() noexcept;

  std::string path_;
  void *mapping_ = nullptr;
  size_t mappingSize_ = 0;
  const unsigned char *dataSection_ = nullptr;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// Collects tensors in memory and writes them as one safetensors file.
class SafetensorsWriter {
public:
  /// Copies numel(shape) * dtypeSize(dtype) bytes from `data` (which may be
  /// null only when the tensor is empty). Duplicate names are an error.
  void add(const std::string &name, DType dtype, std::vector<int64_t> shape,
           const void *data);
  void addF32(const std::string &name, std::vector<int64_t> shape, const float *data);
  void setMetadata(const std::string &key, const std::string &value);
  /// Writes the header (keys sorted, padded with spaces to a multiple of 8
  /// bytes) and the data in key order, through a temporary file in the same
  /// directory that is fsynced and renamed over `path`.
  void write(const std::string &path) const;

private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<unsigned char> bytes;
  };
  std::map<std::string, Entry> tensors_;
  std::map<std::string, std::string> metadata_;
};

} // namespace diffrt

#endif // DIFFRT_SAFETENSORS_H
