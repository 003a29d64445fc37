//===- AtomicFile.h - crash-safe replacement of a file ----------*- C++ -*-===//
//
// Outputs the runtime writes (checkpoints, sample grids) must never be seen
// half-written: a crash or a full disk while writing leaves either the old
// file or the complete new one. AtomicFile writes to a uniquely named
// temporary file in the destination's directory (rename is only atomic
// within one file system), fsyncs it, renames it over the destination and
// fsyncs the directory so that the rename itself survives a power loss.
// Abandoning an AtomicFile without commit() removes the temporary file.
//
// Internal to the io area; not part of the public headers.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_IO_ATOMICFILE_H
#define DIFFRT_IO_ATOMICFILE_H

#include <cstddef>
#include <string>

namespace diffrt::io {

class AtomicFile {
public:
  /// Creates the temporary file next to `path`; errors name `path`.
  explicit AtomicFile(const std::string &path);
  AtomicFile(const AtomicFile &) = delete;
  AtomicFile &operator=(const AtomicFile &) = delete;
  ~AtomicFile();

  void write(const void *data, size_t size);
  /// fsync, close, rename over the destination, fsync the directory.
  void commit();

  const std::string &tempPath() const { return tempPath_; }

private:
  void discard() noexcept;

  std::string path_;
  std::string tempPath_;
  int fd_ = -1;
  bool committed_ = false;
};

/// Writes `size` bytes as the whole content of `path`, crash-safe.
void writeFileAtomically(const std::string &path, const void *data, size_t size);

} // namespace diffrt::io

#endif // DIFFRT_IO_ATOMICFILE_H
