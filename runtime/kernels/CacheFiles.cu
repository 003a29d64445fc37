//===- CacheFiles.cu - the runtime's on-disk cache directory --------------===//
//
// See CacheFiles.h. Host code only; a .cu file so that the kernel library's
// sources stay one kind.
//
//===----------------------------------------------------------------------===//

#include "CacheFiles.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

namespace diffrt::cuda {

std::string cacheDirectory() {
  std::string dir;
  if (const char *d = std::getenv("DIFFC_CACHE_DIR"); d && *d)
    dir = d;
  else if (const char *x = std::getenv("XDG_CACHE_HOME"); x && *x)
    dir = std::string(x) + "/diffc";
  else if (const char *h = std::getenv("HOME"); h && *h)
    dir = std::string(h) + "/.cache/diffc";
  else
    return "";
  // mkdir -p, one component at a time.
  for (size_t i = 1; i <= dir.size(); ++i)
    if (i == dir.size() || dir[i] == '/') {
      std::string part = dir.substr(0, i);
      if (mkdir(part.c_str(), 0755) != 0 && errno != EEXIST)
        return "";
    }
  return dir;
}

std::string replaceCacheFile(const std::string &path, const void *data, size_t size) {
  // The pid keeps concurrent processes off each other's temporary file.
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  std::FILE *f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr)
    return "cannot create " + tmp + ": " + std::strerror(errno);
  bool ok = std::fwrite(data, 1, size, f) == size;
  int err = errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    return "writing " + tmp + " failed: " + std::strerror(err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    return "renaming " + tmp + " over it failed: " + std::strerror(err);
  }
  return "";
}

} // namespace diffrt::cuda
