//===- CacheFiles.h - the runtime's on-disk cache directory -----*- C++ -*-===//
//
// Files the CUDA backend keeps between processes to skip work it already
// did: generated kernels' cubins (GeneratedKernels.cu) and the timed choice
// of cuBLASLt algorithm per product shape (Gemm.cu). Losing or corrupting
// one only costs that work again, so readers treat a bad file as absent;
// writers replace files whole (temporary file, then rename), so a reader
// never sees one half-written.
//
// Internal to the kernel library.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_KERNELS_CACHEFILES_H
#define DIFFRT_KERNELS_CACHEFILES_H

#include <cstddef>
#include <string>

namespace diffrt::cuda {

/// $DIFFC_CACHE_DIR, else $XDG_CACHE_HOME/diffc, else $HOME/.cache/diffc,
/// created if needed; "" when there is none or it cannot be created.
std::string cacheDirectory();

/// Replaces `path` with `size` bytes: written to a temporary file beside it,
/// then renamed over it. Returns an empty string, or why it failed (the
/// temporary file is removed then).
std::string replaceCacheFile(const std::string &path, const void *data, size_t size);

} // namespace diffrt::cuda

#endif // DIFFRT_KERNELS_CACHEFILES_H
