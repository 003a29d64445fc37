//===- Common.cpp - checks, BLAS calls and epilogues of the CPU kernels ---===//
//
// The pieces every kernel file leans on: argument validation with messages
// that name the kernel, the operand and the numbers; the only two OpenBLAS
// entry points the backend uses; the threaded driver of the fused
// bias/activation/gated-residual epilogue; and activate.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"
#include "Simd.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <cstdint>

namespace diffrt::cpu {
namespace detail {

void checkView(const char *kernel, const char *name, ConstMat m, int64_t rows, int64_t cols) {
  if (m.rows != rows || m.cols != cols)
    fail(kernel, ": ", name, " is ", m.rows, " x ", m.cols, ", expected ", rows, " x ", cols);
  if (m.ld < cols || m.ld < 1)
    fail(kernel, ": ", name, " has leading dimension ", m.ld, " < ", cols, " columns");
  if (m.data == nullptr && rows > 0 && cols > 0)
    fail(kernel, ": ", name, " is null");
}

void checkPerSample(const char *kernel, const char *name, ConstMat m, int64_t rows,
                    int64_t rowsPerSample, int64_t cols) {
  if (rowsPerSample < 1 || rows % rowsPerSample != 0)
    fail(kernel, ": ", rows, " rows are not a whole number of samples of ", rowsPerSample,
         " rows (", name, ")");
  checkView(kernel, name, m, rows / rowsPerSample, cols);
}

void checkPositive(const char *kernel, const char *name, int64_t value) {
  if (value <= 0)
    fail(kernel, ": ", name, " must be positive, got ", value);
}

void checkEpilogue(const char *kernel, const GatedResidual *epilogue, int64_t rows, int64_t cols) {
  if (epilogue == nullptr)
    return;
  checkView(kernel, "epilogue residual", epilogue->residual, rows, cols);
  checkPerSample(kernel, "epilogue gate", epilogue->gate, rows, epilogue->rowsPerGate, cols);
}

namespace {

/// Free scratch blocks by capacity (elements). Capacities are powers of two
/// from 4096, so a request reuses any block of its class; at most
/// kPoolBytes stay cached, the rest goes back to the heap.
struct ScratchPool {
  static constexpr size_t kHeader = 64;
  static constexpr size_t kPoolBytes = size_t(1) << 30;
  std::mutex mutex;
  std::multimap<size_t, float *> free;
  size_t cachedBytes = 0;

  static size_t capacityOf(float *p) {
    size_t c;
    std::memcpy(&c, reinterpret_cast<char *>(p) - kHeader, sizeof c);
    return c;
  }
  float *take(size_t n) {
    size_t capacity = 4096;
    while (capacity < n)
      capacity *= 2;
    {
      std::lock_guard<std::mutex> lock(mutex);
      auto it = free.find(capacity);
      if (it != free.end()) {
        float *p = it->second;
        free.erase(it);
        cachedBytes -= capacity * sizeof(float);
        return p;
      }
    }
    char *raw = static_cast<char *>(std::aligned_alloc(kHeader, kHeader + capacity * sizeof(float)));
    if (raw == nullptr)
      fail("out of host memory: a kernel's scratch buffer of ", capacity * sizeof(float),
           " bytes could not be allocated");
    std::memcpy(raw, &capacity, sizeof capacity);
    return reinterpret_cast<float *>(raw + kHeader);
  }
  void give(float *p) {
    size_t capacity = capacityOf(p);
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (cachedBytes + capacity * sizeof(float) <= kPoolBytes) {
        free.emplace(capacity, p);
        cachedBytes += capacity * sizeof(float);
        return;
      }
    }
    std::free(reinterpret_cast<char *>(p) - kHeader);
  }
};

ScratchPool &scratchPool() {
  static ScratchPool *pool = new ScratchPool; // never destroyed: kernels may run at exit
  return *pool;
}

} // namespace

void ScratchRelease::operator()(float *p) const {
  if (p != nullptr)
    scratchPool().give(p);
}

Scratch scratch(int64_t n) { return Scratch(scratchPool().take(static_cast<size_t>(n > 0 ? n : 1))); }

bool overlaps(ConstMat a, ConstMat b) {
  if (a.data == nullptr || b.data == nullptr || a.rows == 0 || b.rows == 0 || a.cols == 0 ||
      b.cols == 0)
    return false;
  const float *aEnd = a.data + (a.rows - 1) * a.ld + a.cols;
  const float *bEnd = b.data + (b.rows - 1) * b.ld + b.cols;
  return a.data < bEnd && b.data < aEnd;
}

namespace {
blasint blasDim(int64_t v) {
  if (v > INT_MAX)
    fail("cpu: matrix dimension ", v, " exceeds the BLAS integer range");
  return static_cast<blasint>(v);
}
} // namespace

void sgemmNT(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
             const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m == 0 || n == 0)
    return;
  // BLAS requires leading dimensions >= 1 even for degenerate shapes.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasDim(m), blasDim(n), blasDim(k), alpha,
              a, blasDim(std::max<int64_t>(lda, 1)), b, blasDim(std::max<int64_t>(ldb, 1)), beta,
              c, blasDim(std::max<int64_t>(ldc, 1)));
}

void sgemmNN(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
             const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m == 0 || n == 0)
    return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasDim(m), blasDim(n), blasDim(k),
              alpha, a, blasDim(std::max<int64_t>(lda, 1)), b, blasDim(std::max<int64_t>(ldb, 1)),
              beta, c, blasDim(std::max<int64_t>(ldc, 1)));
}

void checkAct(const char *kernel, Act act) {
  switch (act) {
  case Act::None:
  case Act::Gelu:
  case Act::GeluTanh:
  case Act::Silu:
    return;
  }
  fail(kernel, ": unknown activation ", static_cast<int32_t>(act));
}

void finishRows(const float *y, int64_t ldy, const float *bias, Act act,
                const GatedResidual *epilogue, Mat out) {
  if (bias == nullptr && act == Act::None && epilogue == nullptr && y == out.data &&
      ldy == out.ld)
    return;
  parallelFor(out.rows, rowGrain(out.cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *residual = nullptr, *gate = nullptr;
      if (epilogue != nullptr) {
        residual = epilogue->residual.row(r);
        gate = epilogue->gate.row(r / epilogue->rowsPerGate);
      }
      simd::finishRow(y + r * ldy, bias, act, residual, gate, out.row(r), out.cols);
    }
  });
}

} // namespace detail

void activate(float *x, int64_t n, Act act) {
  if (n > 0 && x == nullptr)
    fail("activate: null data for ", n, " values");
  detail::checkAct("activate", act);
  if (act == Act::None)
    return;
  parallelFor(n, detail::kElementGrain,
              [&](int64_t b, int64_t e) { simd::activateInPlace(x + b, e - b, act); });
}

} // namespace diffrt::cpu
