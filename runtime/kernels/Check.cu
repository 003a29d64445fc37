//===- Check.cu - CUDA error reporting ------------------------------------===//
//
// The one place that turns a CUDA error code into a diffrt::Error.
//
//===----------------------------------------------------------------------===//

#include "Common.cuh"

namespace diffrt::cuda {

void check(int cudaError, const char *what) {
  if (cudaError != cudaSuccess)
    fail(what, ": ", cudaGetErrorString(static_cast<cudaError_t>(cudaError)), " (CUDA error ",
         cudaError, ")");
}

} // namespace diffrt::cuda
