//===- Safetensors.cpp - reading and writing .safetensors files -----------===//
//
// The reader trusts nothing in the file: header length, JSON, dtypes,
// shapes and byte ranges are all checked against each other and against the
// file size before any tensor is handed out, and every check failure says
// which file, which tensor or field and which numbers disagree.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Safetensors.h"

#include "AtomicFile.h"
#include "diffrt/Error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

// The data section is little-endian and data() hands out raw bytes, so the
// host must share that byte order.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "diffrt assumes a little-endian host");

namespace diffrt {
namespace {

using json = nlohmann::json;

// A header this large is not a tensor index but a corrupt length field; the
// bound keeps a bad file from making us parse gigabytes of JSON.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::string jsonShapeText(const std::vector<int64_t> &shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i)
    os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

bool dtypeFromName(const std::string &name, DType &out) {
  static const std::pair<const char *, DType> table[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F64", DType::F64},
      {"I32", DType::I32}, {"I64", DType::I64}, {"U8", DType::U8}};
  for (const auto &[text, dtype] : table)
    if (name == text) {
      out = dtype;
      return true;
    }
  return false;
}

/// numel(shape) * elementSize, or false on overflow of 64 bits.
bool byteCount(const std::vector<int64_t> &shape, size_t elementSize, uint64_t &out) {
  uint64_t total = elementSize;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(total, static_cast<uint64_t>(d), &total))
      return false;
  out = total;
  return true;
}

size_t levenshtein(const std::string &a, const std::string &b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

/// Reads a JSON integer that must be >= 0; `what` names it in errors.
uint64_t nonNegativeInteger(const json &value, const std::string &file, const std::string &what) {
  if (value.is_number_unsigned())
    return value.get<uint64_t>();
  if (value.is_number_integer())
    fail(file, ": ", what, " is ", value.get<int64_t>(), ", which is negative");
  fail(file, ": ", what, " is ", value.dump(), ", not an integer");
}

} // namespace

//===----------------------------------------------------------------------===//
// SafetensorsFile
//===----------------------------------------------------------------------===//

SafetensorsFile::SafetensorsFile(SafetensorsFile &&other) noexcept { *this = std::move(other); }

SafetensorsFile &SafetensorsFile::operator=(SafetensorsFile &&other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    tensors_ = std::move(other.tensors_);
    metadata_ = std::move(other.metadata_);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mappingSize_ = std::exchange(other.mappingSize_, 0);
    dataSection_ = std::exchange(other.dataSection_, nullptr);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { release(); }

void SafetensorsFile::release() noexcept {
  if (mapping_)
    ::munmap(mapping_, mappingSize_);
  mapping_ = nullptr;
  mappingSize_ = 0;
  dataSection_ = nullptr;
}

SafetensorsFile SafetensorsFile::open(const std::string &path) {
  SafetensorsFile file;
  file.path_ = path;

  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(path, ": cannot stat: ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  uint64_t fileSize = static_cast<uint64_t>(st.st_size);
  if (fileSize < 8) {
    ::close(fd);
    fail(path, ": file is ", fileSize, " bytes, shorter than the 8-byte header length field");
  }
  void *mapping = ::mmap(nullptr, fileSize, PROT_READ, MAP_PRIVATE, fd, 0);
  int mapErr = errno;
  ::close(fd); // the mapping keeps the file referenced
  if (mapping == MAP_FAILED)
    fail(path, ": cannot map ", fileSize, " bytes: ", std::strerror(mapErr));
  file.mapping_ = mapping;
  file.mappingSize_ = fileSize;
  const unsigned char *bytes = static_cast<const unsigned char *>(mapping);

  uint64_t headerLength = 0;
  for (int i = 7; i >= 0; --i)
    headerLength = (headerLength << 8) | bytes[i];
  if (headerLength > fileSize - 8)
    fail(path, ": header length ", headerLength, " runs past the end of the file (8 + ",
         headerLength, " > file size ", fileSize, ")");
  if (headerLength > kMaxHeaderBytes)
    fail(path, ": header length ", headerLength, " exceeds the limit of ", kMaxHeaderBytes,
         " bytes (100 MiB)");
  const char *headerBegin = reinterpret_cast<const char *>(bytes + 8);
  file.dataSection_ = bytes + 8 + headerLength;
  uint64_t dataSize = fileSize - 8 - headerLength;

  json header;
  try {
    header = json::parse(headerBegin, headerBegin + headerLength);
  } catch (const json::exception &e) {
    fail(path, ": header JSON (", headerLength, " bytes) does not parse: ", e.what());
  }
  if (!header.is_object())
    fail(path, ": header JSON is a ", header.type_name(), ", not an object");

  struct Range {
    uint64_t begin, end;
    const std::string *name;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string &name = it.key();
    const json &entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object())
        fail(path, ": __metadata__ is a ", entry.type_name(), ", not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string())
          fail(path, ": __metadata__ entry '", m.key(), "' is a ", m.value().type_name(),
               ", not a string");
        file.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    std::string where = "tensor '" + name + "'";
    if (!entry.is_object())
      fail(path, ": ", where, ": entry is a ", entry.type_name(), ", not an object");

    auto dtypeIt = entry.find("dtype");
    if (dtypeIt == entry.end())
      fail(path, ": ", where, ": missing field 'dtype'");
    if (!dtypeIt->is_string())
      fail(path, ": ", where, ": dtype is ", dtypeIt->dump(), ", not a string");
    TensorInfo info;
    if (!dtypeFromName(dtypeIt->get<std::string>(), info.dtype))
      fail(path, ": ", where, ": unsupported dtype '", dtypeIt->get<std::string>(),
           "' (supported: F32, F16, BF16, F64, I32, I64, U8)");

    auto shapeIt = entry.find("shape");
    if (shapeIt == entry.end())
      fail(path, ": ", where, ": missing field 'shape'");
    if (!shapeIt->is_array())
      fail(path, ": ", where, ": shape is ", shapeIt->dump(), ", not an array");
    for (size_t d = 0; d < shapeIt->size(); ++d) {
      uint64_t extent =
          nonNegativeInteger((*shapeIt)[d], path, where + ": shape[" + std::to_string(d) + "]");
      if (extent > static_cast<uint64_t>(INT64_MAX))
        fail(path, ": ", where, ": shape[", d, "] = ", extent, " is too large");
      info.shape.push_back(static_cast<int64_t>(extent));
    }
    uint64_t needed = 0;
    if (!byteCount(info.shape, dtypeSize(info.dtype), needed))
      fail(path, ": ", where, ": ", dtypeName(info.dtype), " shape ", jsonShapeText(info.shape),
           " has more than 2^64 bytes");

    auto offsetsIt = entry.find("data_offsets");
    if (offsetsIt == entry.end())
      fail(path, ": ", where, ": missing field 'data_offsets'");
    if (!offsetsIt->is_array() || offsetsIt->size() != 2)
      fail(path, ": ", where, ": data_offsets is ", offsetsIt->dump(),
           ", not an array [begin, end]");
    uint64_t begin = nonNegativeInteger((*offsetsIt)[0], path, where + ": data_offsets[0]");
    uint64_t end = nonNegativeInteger((*offsetsIt)[1], path, where + ": data_offsets[1]");
    if (begin > end)
      fail(path, ": ", where, ": data_offsets [", begin, ", ", end, "] has begin > end");
    if (end > dataSize)
      fail(path, ": ", where, ": data_offsets [", begin, ", ", end,
           "] run past the end of the data section of ", dataSize, " bytes (file size ",
           fileSize, ", header ", headerLength, " bytes)");
    if (end - begin != needed)
      fail(path, ": ", where, ": data_offsets [", begin, ", ", end, "] hold ", end - begin,
           " bytes but ", dtypeName(info.dtype), " shape ", jsonShapeText(info.shape), " needs ",
           needed);
    info.bytes = static_cast<size_t>(needed);
    info.offset = static_cast<size_t>(begin);
    auto inserted = file.tensors_.emplace(name, std::move(info));
    if (begin != end)
      ranges.push_back({begin, end, &inserted.first->first});
  }

  std::sort(ranges.begin(), ranges.end(), [](const Range &a, const Range &b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      fail(path, ": tensor '", *ranges[i].name, "': data_offsets [", ranges[i].begin, ", ",
           ranges[i].end, "] overlap tensor '", *ranges[i - 1].name, "' at [",
           ranges[i - 1].begin, ", ", ranges[i - 1].end, "]");
  return file;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto &entry : tensors_)
    out.push_back(entry.first);
  return out;
}

bool SafetensorsFile::contains(const std::string &name) const { return tensors_.count(name) != 0; }

const TensorInfo &SafetensorsFile::info(const std::string &name) const {
  auto it = tensors_.find(name);
  if (it != tensors_.end())
    return it->second;
  std::vector<std::pair<size_t, const std::string *>> scored;
  scored.reserve(tensors_.size());
  for (const auto &entry : tensors_)
    scored.emplace_back(levenshtein(name, entry.first), &entry.first);
  size_t shown = std::min<size_t>(10, scored.size());
  std::partial_sort(scored.begin(), scored.begin() + shown, scored.end(),
                    [](const auto &a, const auto &b) {
                      return a.first != b.first ? a.first < b.first : *a.second < *b.second;
                    });
  std::ostringstream os;
  os << "the file has " << tensors_.size() << " tensor" << (tensors_.size() == 1 ? "" : "s");
  if (shown > 0) {
    os << "; closest: ";
    for (size_t i = 0; i < shown; ++i)
      os << (i ? ", " : "") << '\'' << *scored[i].second << '\'';
  }
  fail(path_, ": no tensor named '", name, "' (", os.str(), ")");
}

const void *SafetensorsFile::data(const std::string &name) const {
  return dataSection_ + info(name).offset;
}

std::vector<float> SafetensorsFile::readF32(const std::string &name) const {
  const TensorInfo &t = info(name);
  const unsigned char *src = dataSection_ + t.offset;
  size_t count = t.bytes / dtypeSize(t.dtype);
  std::vector<float> out(count);
  switch (t.dtype) {
  case DType::F32:
    if (count)
      std::memcpy(out.data(), src, t.bytes);
    break;
  case DType::F16:
  case DType::BF16:
    for (size_t i = 0; i < count; ++i) {
      uint16_t bits;
      std::memcpy(&bits, src + 2 * i, 2);
      out[i] = t.dtype == DType::F16 ? halfToFloat(bits) : bf16ToFloat(bits);
    }
    break;
  case DType::F64:
    for (size_t i = 0; i < count; ++i) {
      double value;
      std::memcpy(&value, src + 8 * i, 8);
      out[i] = static_cast<float>(value);
    }
    break;
  case DType::I32:
  case DType::I64:
  case DType::U8:
    fail(path_, ": tensor '", name, "' has dtype ", dtypeName(t.dtype),
         "; readF32 converts only F32, F16, BF16 and F64");
  }
  return out;
}

std::map<std::string, std::string> SafetensorsFile::metadata() const { return metadata_; }

//===----------------------------------------------------------------------===//
// SafetensorsWriter
//===----------------------------------------------------------------------===//

void SafetensorsWriter::add(const std::string &name, DType dtype, std::vector<int64_t> shape,
                            const void *data) {
  if (name.empty())
    fail("safetensors writer: empty tensor name");
  if (name == "__metadata__")
    fail("safetensors writer: '__metadata__' is reserved and cannot name a tensor");
  if (tensors_.count(name))
    fail("safetensors writer: tensor '", name, "' added twice");
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] < 0)
      fail("safetensors writer: tensor '", name, "': shape ", jsonShapeText(shape), " has dimension ",
           d, " = ", shape[d], " < 0");
  uint64_t bytes = 0;
  if (!byteCount(shape, dtypeSize(dtype), bytes) || bytes > SIZE_MAX)
    fail("safetensors writer: tensor '", name, "': ", dtypeName(dtype), " shape ",
         jsonShapeText(shape), " is too large");
  if (bytes > 0 && data == nullptr)
    fail("safetensors writer: tensor '", name, "': null data for ", bytes, " bytes");
  Entry entry{dtype, std::move(shape), {}};
  const unsigned char *src = static_cast<const unsigned char *>(data);
  if (bytes > 0)
    entry.bytes.assign(src, src + bytes);
  tensors_.emplace(name, std::move(entry));
}

void SafetensorsWriter::addF32(const std::string &name, std::vector<int64_t> shape,
                               const float *data) {
  add(name, DType::F32, std::move(shape), data);
}

void SafetensorsWriter::setMetadata(const std::string &key, const std::string &value) {
  metadata_[key] = value;
}

void SafetensorsWriter::write(const std::string &path) const {
  // nlohmann's default object is an ordered std::map, so dump() emits keys
  // sorted and the header is byte-for-byte reproducible.
  json header = json::object();
  if (!metadata_.empty())
    header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto &[name, entry] : tensors_) {
    uint64_t end = offset + entry.bytes.size();
    header[name] = {{"dtype", dtypeName(entry.dtype)},
                    {"shape", entry.shape},
                    {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception &e) {
    fail(path, ": cannot encode the header (tensor names and metadata must be UTF-8): ",
         e.what());
  }
  // Padding keeps the data section 8-byte aligned relative to the file start.
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char lengthField[8];
  uint64_t length = text.size();
  for (int i = 0; i < 8; ++i)
    lengthField[i] = static_cast<unsigned char>(length >> (8 * i));

  io::AtomicFile out(path);
  out.write(lengthField, sizeof(lengthField));
  out.write(text.data(), text.size());
  for (const auto &entry : tensors_)
    if (!entry.second.bytes.empty())
      out.write(entry.second.bytes.data(), entry.second.bytes.size());
  out.commit();
}

} // namespace diffrt
