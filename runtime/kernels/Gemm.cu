//===- Gemm.cu - dense layers through cuBLASLt with fused epilogues -------===//
//
// Gemm::run computes out = act(a · wᵀ + bias), then the optional gated
// residual out = residual + gate[r / rowsPerGate] ⊙ y, for row-major views
// with leading dimensions. cuBLASLt is column-major, so the product is
// issued as outᵀ (N x M) = w (N x K) · aᵀ (K x M): a row-major matrix with
// leading dimension ld *is* its transpose in column-major with the same ld,
// which lets column slices of wider buffers (q inside a packed qkv, one of
// the six adaLN vectors) go in without copies. Bias and (for f16/bf16) the
// tanh GELU run in cuBLASLt's epilogue; exact GELU, SiLU and the gated
// residual run in one element-wise pass of our own after the product, which
// with a residual reads the product from a workspace copy (the residual may
// be out itself). Matmul descriptors,
// layouts and the algorithm are cached per shape, leading dimensions,
// alignment, dtype and epilogue, so a steady-state call is one
// cublasLtMatmul (plus at most one pass) with no host synchronisation.
// The algorithm is the fastest of the heuristic's best eight, timed on the
// first (uncaptured) call of each shape and recorded in the cache directory
// so that later processes issue the same one (DIFFRT_GEMM_TUNE).
//
//===----------------------------------------------------------------------===//

#include "CacheFiles.h"
#include "Common.cuh"

#include <cublasLt.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace diffrt::cuda {

namespace {

/// cuBLASLt's recommended workspace for Hopper: the stream-K and split-K
/// kernels of large products need it, and it is small next to activations.
constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;
/// Alignment of every buffer carved out of a caller's workspace (cuBLASLt's
/// default assumption for its operands and workspace).
constexpr size_t kCarveAlign = 256;

size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

void checkView(const char *name, DConstMat m, int64_t rows, int64_t cols) {
  if (m.rows != rows || m.cols != cols)
    fail("Gemm: ", name, " is ", m.rows, " x ", m.cols, ", expected ", rows, " x ", cols);
  if (m.ld < cols || m.ld < 1)
    fail("Gemm: ", name, " has leading dimension ", m.ld, " < ", cols, " columns");
  if (m.data == nullptr && rows > 0 && cols > 0)
    fail("Gemm: ", name, " is null");
}

/// Largest power of two (capped at 256) dividing both the address and the
/// row pitch in bytes: what cuBLASLt may assume about an operand.
uint32_t alignmentOf(const void *p, int64_t ld, size_t elem) {
  uintptr_t bits = reinterpret_cast<uintptr_t>(p) | static_cast<uintptr_t>(ld * elem) | 256u;
  return static_cast<uint32_t>(bits & (~bits + 1));
}

cudaDataType_t cudaTypeOf(DType dtype) {
  switch (dtype) {
  case DType::F16: return CUDA_R_16F;
  case DType::BF16: return CUDA_R_16BF;
  case DType::F32: return CUDA_R_32F;
  default: fail("Gemm: unsupported element type ", dtypeName(dtype));
  }
}

//===----------------------------------------------------------------------===//
// The element-wise epilogue pass
//===----------------------------------------------------------------------===//

/// out[r][c] = f(y[r][c] + bias[c]) with f = act, then, with a residual,
/// out = residual + gate[r / rowsPerGate] ⊙ that. y may be null (an empty
/// reduction: y = 0), and may alias out, as may residual: every element is
/// read by the thread that writes it, before it writes it.
template <typename T> struct PassArgs {
  const T *y;
  int64_t ldy;
  const T *bias;
  int act;
  const T *residual;
  int64_t ldr;
  const T *gate;
  int64_t ldg, rowsPerGate;
  T *out;
  int64_t ldo, rows, cols;
};

/// Threads along x cover the vectors of a row, threads along y rows; blocks
/// along y loop over row groups, so any number of rows fits the grid.
template <typename T, int V> __global__ void epiloguePass(PassArgs<T> p) {
  int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (c >= p.cols)
    return;
  for (int64_t r = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; r < p.rows;
       r += static_cast<int64_t>(gridDim.y) * blockDim.y) {
    float v[V];
    if constexpr (V > 1) {
      if (p.y != nullptr)
        loadVec<T>(p.y + r * p.ldy + c, v);
      else
        for (int i = 0; i < V; ++i)
          v[i] = 0.0f;
      if (p.bias != nullptr) {
        float b[V];
        loadVec<T>(p.bias + c, b);
        for (int i = 0; i < V; ++i)
          v[i] += b[i];
      }
    } else {
      v[0] = p.y != nullptr ? toF<T>(p.y[r * p.ldy + c]) : 0.0f;
      if (p.bias != nullptr)
        v[0] += toF<T>(p.bias[c]);
    }
#pragma unroll
    for (int i = 0; i < V; ++i)
      v[i] = applyActPrecise(v[i], p.act);
    if (p.residual != nullptr) {
      const T *res = p.residual + r * p.ldr + c;
      const T *gate = p.gate + (r / p.rowsPerGate) * p.ldg + c;
      if constexpr (V > 1) {
        float rv[V], gv[V];
        loadVec<T>(res, rv);
        loadVec<T>(gate, gv);
        for (int i = 0; i < V; ++i)
          v[i] = rv[i] + gv[i] * v[i];
      } else {
        v[0] = toF<T>(*res) + toF<T>(*gate) * v[0];
      }
    }
    if constexpr (V > 1)
      storeVec<T>(p.out + r * p.ldo + c, v);
    else
      p.out[r * p.ldo + c] = fromF<T>(v[0]);
  }
}

template <typename T> void launchPass(cudaStream_t stream, const PassArgs<T> &p) {
  constexpr int kV = kVec<T>;
  size_t elem = sizeof(T);
  bool vec = p.cols % kV == 0 && vectorizable(p.y, p.ldy, p.cols, elem) &&
             vectorizable(p.out, p.ldo, p.cols, elem) &&
             (p.bias == nullptr || aligned16(p.bias)) &&
             vectorizable(p.residual, p.ldr, p.cols, elem) &&
             vectorizable(p.gate, p.ldg, p.cols, elem);
  int width = vec ? kV : 1;
  int64_t perRow = (p.cols + width - 1) / width;
  // 256 threads: as many along x as a row has vectors (a warp at least), the
  // rest along rows; enough row blocks to fill the device a few times over.
  int tx = perRow >= 256 ? 256 : static_cast<int>((perRow + 31) / 32 * 32);
  int ty = 256 / tx;
  unsigned gx = static_cast<unsigned>((perRow + tx - 1) / tx);
  int64_t rowBlocks = (p.rows + ty - 1) / ty;
  int64_t cap = static_cast<int64_t>(multiprocessorCount()) * 16 / gx + 1;
  unsigned gy = static_cast<unsigned>(std::min<int64_t>({rowBlocks, cap, 65535}));
  dim3 block(tx, ty), grid(gx, gy);
  if (vec)
    epiloguePass<T, kV><<<grid, block, 0, stream>>>(p);
  else
    epiloguePass<T, 1><<<grid, block, 0, stream>>>(p);
  checkLaunch("gemm epilogue");
}

//===----------------------------------------------------------------------===//
// Timed algorithm choices, kept between processes
//===----------------------------------------------------------------------===//

/// One timed choice: the algorithm (cuBLASLt documents the opaque struct as
/// serialisable for the same library version) and its workspace.
struct TunedChoice {
  cublasLtMatmulAlgo_t algo;
  size_t workspace;
};

/// The process-wide record of timed choices, a table per file (one file per
/// GPU model and cuBLASLt version in the cache directory), read on first use
/// and rewritten whole (to a temporary, then renamed) after each new
/// choice, so that a crash never leaves a partial line and a run killed
/// after its first step still resumes with the same algorithms. That is
/// quadratic in the shapes of a file, which stays small: about 30 for a
/// model, 560 for the whole GPU test suite. Keeping the choices is what
/// makes them repeatable: timings differ from run to run, and so could the
/// fastest algorithm, whose summation order sets the result's bits; with the
/// record, every later session and process (a resumed training run) issues
/// the algorithms the first one timed.
///
/// File: a comment line, then one line per product shape,
/// `<shape key> = <the algorithm's 8 words> <workspace bytes>`, in decimal.
/// A line that does not parse is reported once and ignored; the next
/// rewrite drops it.
class TunedAlgorithms {
public:
  static TunedAlgorithms &instance() {
    static TunedAlgorithms record;
    return record;
  }

  bool find(const std::string &file, const std::string &key, TunedChoice &choice) {
    std::lock_guard<std::mutex> lock(mutex);
    Table &t = load(file);
    auto it = t.entries.find(key);
    if (it == t.entries.end())
      return false;
    choice = it->second;
    return true;
  }

  void record(const std::string &file, const std::string &key, const TunedChoice &choice) {
    std::lock_guard<std::mutex> lock(mutex);
    Table &t = load(file);
    t.entries[key] = choice;
    std::string text = "# diffc: the fastest cuBLASLt algorithm timed per product shape "
                       "(DIFFRT_GEMM_TUNE); safe to delete\n";
    for (const auto &[k, c] : t.entries) {
      text += k + " =";
      uint64_t words[8];
      static_assert(sizeof(words) == sizeof(c.algo.data), "cublasLtMatmulAlgo_t is 8 words");
      std::memcpy(words, c.algo.data, sizeof(words));
      for (uint64_t w : words)
        text += " " + std::to_string(w);
      text += " " + std::to_string(c.workspace) + "\n";
    }
    std::string error = replaceCacheFile(file, text.data(), text.size());
    if (!error.empty() && !t.writeFailed) {
      t.writeFailed = true;
      std::fprintf(stderr,
                   "diffrt: warning: cannot keep timed GEMM algorithms in %s (%s); later "
                   "processes will time them again and may choose differently\n",
                   file.c_str(), error.c_str());
    }
  }

private:
  struct Table {
    std::map<std::string, TunedChoice> entries;
    bool writeFailed = false;
  };

  Table &load(const std::string &file) {
    auto found = tables.find(file);
    if (found != tables.end())
      return found->second;
    Table &t = tables[file];
    std::ifstream in(file);
    if (!in)
      return t; // not written yet
    std::string text;
    int number = 0;
    bool warned = false;
    auto bad = [&](const char *why) {
      if (!warned)
        std::fprintf(stderr, "diffrt: warning: %s line %d: %s; ignoring the line (the file is "
                     "rewritten with the next timed choice)\n", file.c_str(), number, why);
      warned = true;
    };
    while (std::getline(in, text)) {
      ++number;
      if (text.empty() || text[0] == '#')
        continue;
      size_t eq = text.find(" = ");
      if (eq == std::string::npos || eq == 0) {
        bad("expected '<shape> = <algorithm> <workspace>'");
        continue;
      }
      uint64_t numbers[9];
      const char *p = text.c_str() + eq + 3;
      bool ok = true;
      for (uint64_t &v : numbers) {
        char *end = nullptr;
        errno = 0;
        if (!std::isdigit(static_cast<unsigned char>(*p))) {
          ok = false;
          break;
        }
        v = std::strtoull(p, &end, 10);
        if (errno != 0 || (*end != ' ' && *end != '\0')) {
          ok = false;
          break;
        }
        p = *end == ' ' ? end + 1 : end;
      }
      if (!ok || *p != '\0') {
        bad("expected 9 decimal numbers after ' = ' (8 algorithm words, the workspace bytes)");
        continue;
      }
      TunedChoice choice{};
      std::memcpy(choice.algo.data, numbers, sizeof(choice.algo.data));
      choice.workspace = static_cast<size_t>(numbers[8]);
      t.entries[text.substr(0, eq)] = choice;
    }
    return t;
  }

  std::mutex mutex;
  std::map<std::string, Table> tables;
};

} // namespace

//===----------------------------------------------------------------------===//
// Gemm::Impl: the cuBLASLt handle and the plan cache
//===----------------------------------------------------------------------===//

struct Gemm::Impl {
  /// Everything the heuristic's choice depends on.
  struct Key {
    int64_t m, n, k, lda, ldw, ldy;
    DType dtype;
    uint32_t epilogue;
    uint32_t alignA, alignW, alignY, alignBias;
    uint64_t workspace;
    bool operator==(const Key &o) const {
      return m == o.m && n == o.n && k == o.k && lda == o.lda && ldw == o.ldw && ldy == o.ldy &&
             dtype == o.dtype && epilogue == o.epilogue && alignA == o.alignA &&
             alignW == o.alignW && alignY == o.alignY && alignBias == o.alignBias &&
             workspace == o.workspace;
    }
  };
  struct KeyHash {
    size_t operator()(const Key &k) const {
      uint64_t h = 1469598103934665603ull;
      auto mix = [&h](uint64_t v) {
        h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
      };
      for (int64_t v : {k.m, k.n, k.k, k.lda, k.ldw, k.ldy})
        mix(static_cast<uint64_t>(v));
      mix(static_cast<uint64_t>(k.dtype));
      mix(k.epilogue);
      mix((uint64_t(k.alignA) << 32) | k.alignW);
      mix((uint64_t(k.alignY) << 32) | k.alignBias);
      mix(k.workspace);
      return static_cast<size_t>(h);
    }
  };
  /// A cached product: descriptors, layouts and the chosen algorithm. Owns
  /// its cuBLASLt objects.
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t layoutW = nullptr, layoutA = nullptr, layoutY = nullptr;
    cublasLtMatmulAlgo_t algo{};
    size_t workspace = 0;
    /// The heuristic's usable algorithms, best-ranked first, while they
    /// are still to be timed (empty once the plan's algorithm is final).
    std::vector<cublasLtMatmulHeuristicResult_t> candidates;
    bool awaitsTiming() const { return !candidates.empty(); }
    /// The plan's line in the record of timed choices.
    std::string tuneKey;
    Plan() = default;
    Plan(const Plan &) = delete;
    Plan &operator=(const Plan &) = delete;
    ~Plan() {
      if (layoutY)
        cublasLtMatrixLayoutDestroy(layoutY);
      if (layoutA)
        cublasLtMatrixLayoutDestroy(layoutA);
      if (layoutW)
        cublasLtMatrixLayoutDestroy(layoutW);
      if (desc)
        cublasLtMatmulDescDestroy(desc);
    }
  };

  /// Unless DIFFRT_GEMM_TUNE=0, the first call of each product shape times
  /// the heuristic's best few algorithms and keeps the fastest, recorded in
  /// the cache directory (without one, the heuristic's first is used, so
  /// that every process issues the same algorithms). DIFFRT_GEMM_TUNE=log
  /// also reports each timing on stderr.
  static constexpr int kTuneCandidates = 8;
  static constexpr int kTuneRepeats = 5;
  /// A candidate replaces the heuristic's first only when this much faster.
  static constexpr float kTuneMargin = 0.97f;
  bool tuning = true, tuneLog = false;
  /// The record file of this GPU model and cuBLASLt version; "" before the
  /// first plan or without a cache directory.
  std::string tuneFile;
  bool tuneFileKnown = false;

  const std::string &tuningFile() {
    if (tuneFileKnown)
      return tuneFile;
    tuneFileKnown = true;
    std::string dir = cacheDirectory();
    if (dir.empty())
      return tuneFile;
    int device = 0;
    cudaDeviceProp prop{};
    check(cudaGetDevice(&device), "Gemm: cudaGetDevice");
    check(cudaGetDeviceProperties(&prop, device), "Gemm: cudaGetDeviceProperties");
    std::string name;
    for (const char *c = prop.name; *c; ++c)
      name += std::isalnum(static_cast<unsigned char>(*c)) ? *c : '-';
    tuneFile = dir + "/gemm-algorithms-" + name + "-" + std::to_string(prop.multiProcessorCount) +
               "sm-cublasLt" + std::to_string(cublasLtGetVersion()) + ".txt";
    return tuneFile;
  }

  static std::string keyText(const char *kind, const Key &k) {
    std::string text = kind;
    for (int64_t v : {k.m, k.n, k.k, k.lda, k.ldw, k.ldy})
      text += " " + std::to_string(v);
    text += std::string(" ") + dtypeName(k.dtype);
    for (uint64_t v : {uint64_t(k.epilogue), uint64_t(k.alignA), uint64_t(k.alignW),
                       uint64_t(k.alignY), uint64_t(k.alignBias), k.workspace})
      text += " " + std::to_string(v);
    return text;
  }

  cublasLtHandle_t handle = nullptr;
  /// Guards the cache and the per-call bias pointer of a shared descriptor.
  std::mutex mutex;
  std::unordered_map<Key, std::unique_ptr<Plan>, KeyHash> plans;
  /// product()'s plans, keyed with the transposes in `epilogue`'s place
  /// (bit 0: transA, bit 1: transB, bit 2: the DGELU epilogue, whose aux
  /// alignment takes alignBias's place).
  std::unordered_map<Key, std::unique_ptr<Plan>, KeyHash> products;

  [[noreturn]] static void ltFail(cublasStatus_t status, const char *call, const Key &key) {
    fail("Gemm: ", call, " failed for M x N x K = ", key.m, " x ", key.n, " x ", key.k, " (",
         dtypeName(key.dtype), ", lda ", key.lda, ", ldw ", key.ldw, ", ldout ", key.ldy,
         ", epilogue ", key.epilogue, "): ", cublasLtGetStatusName(status), " - ",
         cublasLtGetStatusString(status));
  }
  static void ltCheck(cublasStatus_t status, const char *call, const Key &key) {
    if (status != CUBLAS_STATUS_SUCCESS)
      ltFail(status, call, key);
  }

  template <typename V>
  static void setDesc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                      const V &value, const Key &key) {
    ltCheck(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(V)),
            "cublasLtMatmulDescSetAttribute", key);
  }

  static bool auxEpilogue(uint32_t epilogue) {
    return epilogue == CUBLASLT_EPILOGUE_GELU_AUX || epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
  }

  /// Sets p's algorithm: the recorded timed choice for this shape if there
  /// is one and cuBLASLt still accepts it, else the heuristic's first, with
  /// its next best kept as candidates for tune() when tuning.
  void chooseAlgorithm(Plan &p, const Key &key, const char *kind) {
    const bool record = tuning && !tuningFile().empty();
    if (record) {
      p.tuneKey = keyText(kind, key);
      TunedChoice choice{};
      cublasLtMatmulHeuristicResult_t checked{};
      if (TunedAlgorithms::instance().find(tuneFile, p.tuneKey, choice) &&
          cublasLtMatmulAlgoCheck(handle, p.desc, p.layoutW, p.layoutA, p.layoutY, p.layoutY,
                                  &choice.algo, &checked) == CUBLAS_STATUS_SUCCESS &&
          checked.workspaceSize <= key.workspace) {
        p.algo = choice.algo;
        p.workspace = checked.workspaceSize;
        if (tuneLog)
          std::fprintf(stderr, "diffrt gemm tune: %s: the recorded choice\n", p.tuneKey.c_str());
        return;
      }
    }
    cublasLtMatmulPreference_t pref = nullptr;
    ltCheck(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate", key);
    std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>,
                    cublasStatus_t (*)(cublasLtMatmulPreference_t)>
        prefOwner(pref, cublasLtMatmulPreferenceDestroy);
    auto setPref = [&](cublasLtMatmulPreferenceAttributes_t attr, const auto &value) {
      ltCheck(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)),
              "cublasLtMatmulPreferenceSetAttribute", key);
    };
    setPref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, key.workspace);
    // cuBLAS's A is our w (or b), its B our a, its C and D our out.
    setPref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.alignW);
    setPref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.alignA);
    setPref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.alignY);
    setPref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.alignY);
    cublasLtMatmulHeuristicResult_t results[kTuneCandidates] = {};
    int count = 0;
    ltCheck(cublasLtMatmulAlgoGetHeuristic(handle, p.desc, p.layoutW, p.layoutA, p.layoutY,
                                           p.layoutY, pref, record ? kTuneCandidates : 1,
                                           results, &count),
            "cublasLtMatmulAlgoGetHeuristic", key);
    for (int i = 0; i < count; ++i)
      if (results[i].state == CUBLAS_STATUS_SUCCESS)
        p.candidates.push_back(results[i]);
    if (p.candidates.empty())
      ltFail(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmulAlgoGetHeuristic (no algorithm)", key);
    p.algo = p.candidates.front().algo;
    p.workspace = p.candidates.front().workspaceSize;
    if (!record)
      p.candidates.clear();
  }

  /// Times p's candidates on the call's own operands, keeps the fastest and
  /// records it. `launch(algo, workspaceBytes)` issues the product on
  /// `stream`, writing only what the real call overwrites anyway. Not while
  /// the stream is being captured: a plan first met inside a capture keeps
  /// the heuristic's choice until a plain call (the backends run every
  /// entry once before capturing it).
  template <typename Launch>
  void tune(Plan &p, cudaStream_t stream, const Key &key, Launch launch) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    check(cudaStreamIsCapturing(stream, &capture), "Gemm: cudaStreamIsCapturing");
    if (capture != cudaStreamCaptureStatusNone)
      return;
    // Destroyed on every way out (a failing launch throws).
    struct Event {
      cudaEvent_t e = nullptr;
      Event() { check(cudaEventCreate(&e), "Gemm: cudaEventCreate"); }
      ~Event() { cudaEventDestroy(e); }
    } startEvent, stopEvent;
    cudaEvent_t start = startEvent.e, stop = stopEvent.e;
    std::vector<float> times(p.candidates.size(), -1.0f);
    for (size_t i = 0; i < p.candidates.size(); ++i) {
      const auto &c = p.candidates[i];
      if (launch(c.algo, c.workspaceSize) != CUBLAS_STATUS_SUCCESS)
        continue; // this algorithm refused the actual pointers; skip it
      check(cudaEventRecord(start, stream), "Gemm: cudaEventRecord");
      for (int r = 0; r < kTuneRepeats; ++r)
        ltCheck(launch(c.algo, c.workspaceSize), "cublasLtMatmul (tuning)", key);
      check(cudaEventRecord(stop, stream), "Gemm: cudaEventRecord");
      check(cudaEventSynchronize(stop), "Gemm: timing a candidate algorithm");
      check(cudaEventElapsedTime(&times[i], start, stop), "Gemm: cudaEventElapsedTime");
    }
    size_t best = 0;
    for (size_t i = 1; i < times.size(); ++i)
      if (times[i] >= 0.0f && (times[best] < 0.0f || times[i] < times[best]))
        best = i;
    if (times[best] < 0.0f) {
      // Every candidate refused these pointers: the real call reports
      // cuBLASLt's error; nothing is recorded, and the next call of the
      // shape times again.
      if (tuneLog)
        std::fprintf(stderr, "diffrt gemm tune: %s: every candidate refused the call's operands\n",
                     p.tuneKey.c_str());
      return;
    }
    if (times[0] >= 0.0f && times[best] > kTuneMargin * times[0])
      best = 0;
    if (tuneLog) {
      char first[32] = "refused the operands";
      if (times[0] >= 0.0f)
        std::snprintf(first, sizeof first, "%.1f us", 1000.0 * times[0] / kTuneRepeats);
      std::fprintf(stderr, "diffrt gemm tune: %s: heuristic's first %s, chose candidate %zu of %zu %.1f us\n",
                   p.tuneKey.c_str(), first, best, times.size(), 1000.0 * times[best] / kTuneRepeats);
    }
    p.algo = p.candidates[best].algo;
    p.workspace = p.candidates[best].workspaceSize;
    p.candidates.clear();
    TunedAlgorithms::instance().record(tuneFile, p.tuneKey, {p.algo, p.workspace});
  }

  Plan &plan(const Key &key, const void *bias, const void *aux) {
    auto found = plans.find(key);
    if (found != plans.end())
      return *found->second;

    auto p = std::make_unique<Plan>();
    cudaDataType_t type = cudaTypeOf(key.dtype);
    // f32 accumulation for every dtype; for f32 operands this is the exact
    // (non-TF32) mode, so f32 products match the CPU reference to 1e-5.
    ltCheck(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
            "cublasLtMatmulDescCreate", key);
    // outᵀ = w · aᵀ: the row-major w (N x K) is a column-major K x N matrix,
    // hence transposed; the row-major a (M x K) is column-major aᵀ (K x M).
    setDesc(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, int32_t(CUBLAS_OP_T), key);
    setDesc(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, int32_t(CUBLAS_OP_N), key);
    setDesc(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, key.epilogue, key);
    if (key.epilogue & CUBLASLT_EPILOGUE_BIAS) {
      // The heuristic reads the bias pointer's alignment; run() resets the
      // pointer on every call to one of the same alignment class.
      setDesc(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, key);
      setDesc(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t(type), key);
    }
    if (auxEpilogue(key.epilogue)) {
      // The pre-activation, laid out like out (run() uses this only when
      // its leading dimension is out's); the pointer is reset per call.
      setDesc(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux, key);
      setDesc(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, int64_t(key.ldy), key);
    }
    ltCheck(cublasLtMatrixLayoutCreate(&p->layoutW, type, static_cast<uint64_t>(key.k),
                                       static_cast<uint64_t>(key.n), key.ldw),
            "cublasLtMatrixLayoutCreate(w)", key);
    ltCheck(cublasLtMatrixLayoutCreate(&p->layoutA, type, static_cast<uint64_t>(key.k),
                                       static_cast<uint64_t>(key.m), key.lda),
            "cublasLtMatrixLayoutCreate(a)", key);
    ltCheck(cublasLtMatrixLayoutCreate(&p->layoutY, type, static_cast<uint64_t>(key.n),
                                       static_cast<uint64_t>(key.m), key.ldy),
            "cublasLtMatrixLayoutCreate(out)", key);

    chooseAlgorithm(*p, key, "run");
    Plan &ref = *p;
    plans.emplace(key, std::move(p));
    return ref;
  }

  /// A plan for product(): the row-major out = op(a)·op(b) is issued
  /// column-major as outᵀ = op(b)ᵀ·op(a)ᵀ. Row-major data read column-major
  /// is the transpose, so cuBLAS's A is b's data with op N (op T when
  /// transB) and its B is a's data with op N (op T when transA). key.ldw is
  /// b's leading dimension; key.epilogue holds the flags (bit 0 transA,
  /// bit 1 transB).
  Plan &productPlan(const Key &key, const void *geluGradAux) {
    auto found = products.find(key);
    if (found != products.end())
      return *found->second;
    const bool transA = key.epilogue & 1u, transB = key.epilogue & 2u;
    auto p = std::make_unique<Plan>();
    cudaDataType_t type = cudaTypeOf(key.dtype);
    ltCheck(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
            "cublasLtMatmulDescCreate", key);
    setDesc(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, int32_t(transB ? CUBLAS_OP_T : CUBLAS_OP_N), key);
    setDesc(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, int32_t(transA ? CUBLAS_OP_T : CUBLAS_OP_N), key);
    if (key.epilogue & 4u) {
      // out ⊙ gelu'(aux), aux laid out like out; the pointer is reset per
      // call (its alignment class is part of the key).
      setDesc(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, uint32_t(CUBLASLT_EPILOGUE_DGELU), key);
      setDesc(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, geluGradAux, key);
      setDesc(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, int64_t(key.ldy), key);
    }
    // Stored shapes (column-major rows x cols) of the three operands.
    const uint64_t m = key.m, n = key.n, k = key.k;
    ltCheck(cublasLtMatrixLayoutCreate(&p->layoutW, type, transB ? k : n, transB ? n : k, key.ldw),
            "cublasLtMatrixLayoutCreate(b)", key);
    ltCheck(cublasLtMatrixLayoutCreate(&p->layoutA, type, transA ? m : k, transA ? k : m, key.lda),
            "cublasLtMatrixLayoutCreate(a)", key);
    ltCheck(cublasLtMatrixLayoutCreate(&p->layoutY, type, n, m, key.ldy),
            "cublasLtMatrixLayoutCreate(out)", key);
    chooseAlgorithm(*p, key, "product");
    Plan &ref = *p;
    products.emplace(key, std::move(p));
    return ref;
  }
};

Gemm::Gemm() : impl(new Impl) {
  if (const char *v = std::getenv("DIFFRT_GEMM_TUNE"); v && *v) {
    if (std::strcmp(v, "0") != 0 && std::strcmp(v, "1") != 0 && std::strcmp(v, "log") != 0) {
      delete impl;
      fail("DIFFRT_GEMM_TUNE is '", v, "'; expected 0 (the heuristic's algorithm), 1 (time and "
           "record the fastest, the default) or log (1, reporting each timing)");
    }
    impl->tuning = std::strcmp(v, "0") != 0;
    impl->tuneLog = std::strcmp(v, "log") == 0;
  }
  cublasStatus_t status = cublasLtCreate(&impl->handle);
  if (status != CUBLAS_STATUS_SUCCESS) {
    delete impl;
    fail("Gemm: cublasLtCreate failed: ", cublasLtGetStatusName(status), " - ",
         cublasLtGetStatusString(status));
  }
}

Gemm::~Gemm() {
  impl->plans.clear();
  if (impl->handle)
    cublasLtDestroy(impl->handle);
  delete impl;
}

size_t Gemm::workspaceBytes(int64_t m, int64_t n, int64_t k, bool epilogue, DType dtype) {
  (void)k;
  size_t bytes = kCarveAlign + kLtWorkspaceBytes; // slack to align the caller's pointer
  if (epilogue)
    bytes += alignUp(static_cast<size_t>(m) * static_cast<size_t>(n) * dtypeSize(dtype),
                     kCarveAlign);
  return bytes;
}

void Gemm::run(Stream stream, DType dtype, DConstMat a, DConstMat w, const void *bias, Act act,
               const GatedResidual *epilogue, DMat out, Workspace ws, DMat preact) {
  if (dtype != DType::F16 && dtype != DType::BF16 && dtype != DType::F32)
    fail("Gemm: unsupported element type ", dtypeName(dtype));
  switch (act) {
  case Act::None:
  case Act::Gelu:
  case Act::GeluTanh:
  case Act::Silu: break;
  default: fail("Gemm: unknown activation ", static_cast<int32_t>(act));
  }
  const int64_t m = a.rows, k = a.cols, n = w.rows;
  const size_t elem = dtypeSize(dtype);
  checkView("a", a, m, k);
  checkView("w", w, n, k);
  checkView("out", out, m, n);
  if (overlapsD(out, a, elem) || overlapsD(out, w, elem))
    fail("Gemm: out overlaps an input of the product (", m, " x ", n, " x ", k, ")");
  if (epilogue != nullptr) {
    checkView("epilogue residual", epilogue->residual, m, n);
    int64_t rpg = epilogue->rowsPerGate;
    if (rpg < 1 || m % rpg != 0)
      fail("Gemm: ", m, " rows are not a whole number of gate groups of ", rpg, " rows");
    checkView("epilogue gate", epilogue->gate, m / rpg, n);
    // The pass reads residual[r][c] just before writing out[r][c], so the
    // residual may be out itself, but no other overlap is safe.
    bool same = epilogue->residual.data == out.data && epilogue->residual.ld == out.ld;
    if (!same && overlapsD(epilogue->residual, out, elem))
      fail("Gemm: the epilogue residual partially overlaps out");
    if (overlapsD(epilogue->gate, out, elem))
      fail("Gemm: the epilogue gate overlaps out");
  }
  const bool keepZ = preact.data != nullptr;
  if (keepZ) {
    checkView("preact", preact, m, n);
    if (overlapsD(preact, a, elem) || overlapsD(preact, w, elem) || overlapsD(preact, out, elem) ||
        (epilogue != nullptr &&
         (overlapsD(preact, epilogue->residual, elem) || overlapsD(preact, epilogue->gate, elem))))
      fail("Gemm: preact overlaps another operand");
  }
  if (m == 0 || n == 0)
    return;

  // cuBLASLt's GELU epilogue is the tanh form; it serves the 16-bit types,
  // whose output rounding dwarfs its approximation error. f32 keeps the
  // exact expression of the pass so that f32 products match the CPU to 1e-5.
  // With preact, its GELU_AUX form writes z beside gelu(z) when out needs no
  // gated residual and z is laid out like out; otherwise the product goes
  // to preact and the pass reads it from there.
  const bool ltGelu = act == Act::GeluTanh && dtype != DType::F32;
  const bool auxGelu = keepZ && ltGelu && epilogue == nullptr && k > 0 && preact.ld == out.ld &&
                       preact.ld % 8 == 0 && reinterpret_cast<uintptr_t>(preact.data) % 16 == 0;
  const bool ltAct = ltGelu && (!keepZ || auxGelu);
  const bool passAct = act != Act::None && !ltAct;
  cudaStream_t s = native(stream);

  // Where the product goes: out, preact, or (before a gated residual, which
  // may read out) a workspace copy; cuBLASLt gets the rest of the workspace.
  char *base = static_cast<char *>(ws.data);
  size_t avail = ws.data != nullptr ? ws.bytes : 0;
  if (base != nullptr) {
    size_t skew = alignUp(reinterpret_cast<uintptr_t>(base), kCarveAlign) -
                  reinterpret_cast<uintptr_t>(base);
    avail = avail > skew ? avail - skew : 0;
    base += skew;
  }
  void *y = out.data;
  int64_t ldy = out.ld;
  if (keepZ && !auxGelu) {
    y = preact.data;
    ldy = preact.ld;
  } else if (epilogue != nullptr) {
    size_t yBytes = alignUp(static_cast<size_t>(m * n) * elem, kCarveAlign);
    if (avail < yBytes)
      fail("Gemm: workspace of ", ws.bytes, " bytes is too small for ", m, " x ", n, " x ", k,
           " with a gated residual: needs ", workspaceBytes(m, n, k, true, dtype), " bytes");
    y = base;
    ldy = n;
    base += yBytes;
    avail -= yBytes;
  }
  // Quantised so that callers passing slightly different sizes share cache
  // entries; a smaller workspace only narrows the algorithms the heuristic
  // may pick.
  uint64_t ltBytes = 0;
  for (uint64_t candidate : {uint64_t(kLtWorkspaceBytes), uint64_t(8) << 20, uint64_t(1) << 20})
    if (ltBytes == 0 && avail >= candidate)
      ltBytes = candidate;

  if (k > 0) {
    uint32_t epi = auxGelu  ? (bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX)
                   : ltAct  ? (bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU)
                            : (bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
    Impl::Key key{m,
                  n,
                  k,
                  a.ld,
                  w.ld,
                  ldy,
                  dtype,
                  epi,
                  alignmentOf(a.data, a.ld, elem),
                  alignmentOf(w.data, w.ld, elem),
                  alignmentOf(y, ldy, elem),
                  bias ? alignmentOf(bias, 0, elem) : 0u,
                  ltBytes};
    const float alpha = 1.0f, beta = 0.0f;
    void *ltWorkspace = ltBytes > 0 ? base : nullptr;
    std::lock_guard<std::mutex> lock(impl->mutex);
    Impl::Plan &plan = impl->plan(key, bias, preact.data);
    if (bias != nullptr)
      Impl::setDesc(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, key);
    if (auxGelu)
      Impl::setDesc(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, preact.data, key);
    // Writes y (and with auxGelu preact), which the real call overwrites.
    auto launch = [&](const cublasLtMatmulAlgo_t &algo, size_t algoWorkspace) {
      return cublasLtMatmul(impl->handle, plan.desc, &alpha, w.data, plan.layoutW, a.data,
                            plan.layoutA, &beta, y, plan.layoutY, y, plan.layoutY, &algo,
                            ltWorkspace, algoWorkspace, s);
    };
    if (plan.awaitsTiming())
      impl->tune(plan, s, key, launch);
    Impl::ltCheck(launch(plan.algo, plan.workspace), "cublasLtMatmul", key);
    if (!passAct && epilogue == nullptr && y == out.data)
      return;
  }

  // The pass: exact GELU / SiLU and the gated residual (and, for an empty
  // reduction, the bias and every activation on y = 0, with z written to
  // preact first).
  dispatchFloat(dtype, "Gemm", [&](auto tag) {
    using T = decltype(tag);
    PassArgs<T> p{};
    p.y = k > 0 ? static_cast<const T *>(y) : nullptr;
    p.ldy = ldy;
    p.bias = k > 0 ? nullptr : static_cast<const T *>(bias);
    p.rows = m;
    p.cols = n;
    if (k == 0 && keepZ) {
      p.out = static_cast<T *>(preact.data);
      p.ldo = preact.ld;
      launchPass<T>(s, p);
      p.y = static_cast<const T *>(preact.data);
      p.ldy = preact.ld;
      p.bias = nullptr;
    }
    p.act = static_cast<int>(k > 0 && !passAct ? Act::None : act);
    if (epilogue != nullptr) {
      p.residual = static_cast<const T *>(epilogue->residual.data);
      p.ldr = epilogue->residual.ld;
      p.gate = static_cast<const T *>(epilogue->gate.data);
      p.ldg = epilogue->gate.ld;
      p.rowsPerGate = epilogue->rowsPerGate;
    }
    p.out = static_cast<T *>(out.data);
    p.ldo = out.ld;
    launchPass<T>(s, p);
  });
}

size_t Gemm::productWorkspaceBytes() { return kCarveAlign + kLtWorkspaceBytes; }

void Gemm::product(Stream stream, DType dtype, DConstMat a, bool transA, DConstMat b, bool transB,
                   DMat out, float beta, Workspace ws, DConstMat geluGradAux) {
  if (dtype != DType::F16 && dtype != DType::BF16 && dtype != DType::F32)
    fail("Gemm: unsupported element type ", dtypeName(dtype));
  const int64_t m = out.rows, n = out.cols, k = transA ? a.rows : a.cols;
  const size_t elem = dtypeSize(dtype);
  checkView("a", a, transA ? k : m, transA ? m : k);
  checkView("b", b, transB ? n : k, transB ? k : n);
  checkView("out", out, m, n);
  if (overlapsD(out, a, elem) || overlapsD(out, b, elem))
    fail("Gemm: out overlaps an input of the product (", m, " x ", n, " x ", k, ")");
  const bool dgelu = geluGradAux.data != nullptr;
  if (dgelu) {
    checkView("geluGradAux", geluGradAux, m, n);
    if (dtype == DType::F32 || transA || transB || beta != 0.0f)
      fail("Gemm: the DGELU epilogue takes f16/bf16 operands without transposes and beta 0");
    if (geluGradAux.ld != out.ld || (geluGradAux.ld * elem) % 16 != 0 ||
        reinterpret_cast<uintptr_t>(geluGradAux.data) % 16 != 0)
      fail("Gemm: the DGELU epilogue's aux must be laid out like out (leading dimension ", out.ld,
           ", got ", geluGradAux.ld, ") with 16-byte aligned rows");
    if (overlapsD(geluGradAux, out, elem))
      fail("Gemm: the DGELU epilogue's aux overlaps out");
  }
  if (m == 0 || n == 0)
    return;
  cudaStream_t s = native(stream);
  if (k == 0) {
    // An empty reduction: out = beta·out, which for the only beta the
    // backward passes use with k = 0 (zero) is a clear.
    if (beta != 0.0f)
      return;
    for (int64_t r = 0; r < m; ++r)
      check(cudaMemsetAsync(static_cast<char *>(out.data) + r * out.ld * elem, 0, n * elem, s),
            "Gemm: clearing an empty product");
    return;
  }
  char *base = static_cast<char *>(ws.data);
  size_t avail = ws.data != nullptr ? ws.bytes : 0;
  if (base != nullptr) {
    size_t skew = alignUp(reinterpret_cast<uintptr_t>(base), kCarveAlign) -
                  reinterpret_cast<uintptr_t>(base);
    avail = avail > skew ? avail - skew : 0;
    base += skew;
  }
  uint64_t ltBytes = 0;
  for (uint64_t candidate : {uint64_t(kLtWorkspaceBytes), uint64_t(8) << 20, uint64_t(1) << 20})
    if (ltBytes == 0 && avail >= candidate)
      ltBytes = candidate;
  Impl::Key key{m,
                n,
                k,
                a.ld,
                b.ld,
                out.ld,
                dtype,
                (transA ? 1u : 0u) | (transB ? 2u : 0u) | (dgelu ? 4u : 0u),
                alignmentOf(a.data, a.ld, elem),
                alignmentOf(b.data, b.ld, elem),
                alignmentOf(out.data, out.ld, elem),
                dgelu ? alignmentOf(geluGradAux.data, geluGradAux.ld, elem) : 0u,
                ltBytes};
  const float alpha = 1.0f;
  std::lock_guard<std::mutex> lock(impl->mutex);
  Impl::Plan &plan = impl->productPlan(key, geluGradAux.data);
  if (dgelu)
    Impl::setDesc(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, geluGradAux.data, key);
  void *ltWorkspace = ltBytes > 0 ? base : nullptr;
  auto launch = [&](const cublasLtMatmulAlgo_t &algo, size_t algoWorkspace) {
    return cublasLtMatmul(impl->handle, plan.desc, &alpha, b.data, plan.layoutW, a.data,
                          plan.layoutA, &beta, out.data, plan.layoutY, out.data, plan.layoutY,
                          &algo, ltWorkspace, algoWorkspace, s);
  };
  // Tuning overwrites out, so only a call that overwrites it anyway tunes.
  if (plan.awaitsTiming() && beta == 0.0f)
    impl->tune(plan, s, key, launch);
  Impl::ltCheck(launch(plan.algo, plan.workspace), "cublasLtMatmul (product)", key);
}

} // namespace diffrt::cuda
