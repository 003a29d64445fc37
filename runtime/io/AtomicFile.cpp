//===- AtomicFile.cpp - crash-safe replacement of a file ------------------===//
//
// POSIX implementation of AtomicFile: O_EXCL temporary file beside the
// destination, fsync, rename, directory fsync.
//
//===----------------------------------------------------------------------===//

#include "AtomicFile.h"

#include "diffrt/Error.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace diffrt::io {
namespace {

std::string directoryOf(const std::string &path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  if (slash == 0)
    return "/";
  return path.substr(0, slash);
}

std::string baseNameOf(const std::string &path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string errnoText(int err) { return std::strerror(err); }

// Distinguishes temporary files of concurrent writers inside one process;
// the pid distinguishes processes.
std::atomic<unsigned> tempCounter{0};

} // namespace

AtomicFile::AtomicFile(const std::string &path) : path_(path) {
  std::string base = baseNameOf(path);
  if (base.empty() || base == "." || base == "..")
    fail(path, ": not a file name");
  std::string dir = directoryOf(path);
  // A hidden name keeps directory listings (and globs such as *.png) from
  // picking up a file that is still being written.
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string candidate = dir + "/." + base + ".tmp-" + std::to_string(::getpid()) + "-" +
                            std::to_string(tempCounter.fetch_add(1));
    int fd = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      fd_ = fd;
      tempPath_ = candidate;
      return;
    }
    if (errno != EEXIST)
      fail(path, ": cannot create a temporary file in '", dir, "': ", errnoText(errno));
  }
  fail(path, ": cannot create a temporary file in '", dir,
       "': 100 candidate names already exist");
}

AtomicFile::~AtomicFile() {
  if (!committed_)
    discard();
}

void AtomicFile::discard() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!tempPath_.empty())
    ::unlink(tempPath_.c_str());
}

void AtomicFile::write(const void *data, size_t size) {
  if (fd_ < 0)
    fail(path_, ": write after the file was committed or abandoned");
  const char *p = static_cast<const char *>(data);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd_, p + done, size - done);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      int err = errno;
      discard();
      fail(path_, ": writing ", size, " bytes to temporary file '", tempPath_, "' failed after ",
           done, " bytes: ", errnoText(err));
    }
    done += static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0)
    fail(path_, ": commit after the file was committed or abandoned");
  if (::fsync(fd_) != 0) {
    int err = errno;
    discard();
    fail(path_, ": fsync of temporary file '", tempPath_, "' failed: ", errnoText(err));
  }
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    int err = errno;
    discard();
    fail(path_, ": closing temporary file '", tempPath_, "' failed: ", errnoText(err));
  }
  if (::rename(tempPath_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    discard();
    fail(path_, ": renaming temporary file '", tempPath_, "' over it failed: ", errnoText(err));
  }
  committed_ = true;
  // The rename is only durable once the directory entry is on disk.
  std::string dir = directoryOf(path_);
  int dirFd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirFd < 0)
    fail(path_, ": written, but opening directory '", dir, "' to fsync it failed: ",
         errnoText(errno));
  int rc = ::fsync(dirFd);
  int err = errno;
  ::close(dirFd);
  // Some file systems cannot fsync a directory (EINVAL); the data itself is
  // already synced, so that is not a failure of this write.
  if (rc != 0 && err != EINVAL)
    fail(path_, ": written, but fsync of directory '", dir, "' failed: ", errnoText(err));
}

void writeFileAtomically(const std::string &path, const void *data, size_t size) {
  AtomicFile file(path);
  file.write(data, size);
  file.commit();
}

} // namespace diffrt::io
