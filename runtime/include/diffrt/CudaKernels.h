//===- CudaKernels.h - the CUDA kernel library ------------------*- C++ -*-===//
//
// The GPU counterparts of CpuKernels.h: same semantics, device pointers, one
// CUDA stream, 16-bit activations (f16 for sampling, bf16 for training) with
// f32 accumulation, softmax, norm statistics and GLA decays. Every kernel is
// checked against its CPU reference on the GPU machine (tests labelled gpu).
// No function synchronises with the host; work that depends on data (MoE
// routing counts) stays on the device.
//
// This header has no CUDA types so that host-only code can include it;
// `stream` is a cudaStream_t.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_CUDAKERNELS_H
#define DIFFRT_CUDAKERNELS_H

#include "diffrt/CpuKernels.h"
#include "diffrt/DType.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace diffrt::cuda {

using Stream = void *;
using cpu::Act;
using cpu::NormKind;
using cpu::ScanOrder;

/// Device matrix views (row-major with leading dimension, like cpu::Mat).
struct DConstMat {
  const void *data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  bool empty() const { return data == nullptr; }
};
struct DMat {
  void *data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  operator DConstMat() const { return {data, rows, cols, ld}; }
};

/// Device scratch memory a kernel may use; kernels fail with a message
/// naming the bytes needed when it is too small.
struct Workspace {
  void *data = nullptr;
  size_t bytes = 0;
};

/// Throws diffrt::Error with the CUDA error string and `what` on failure.
void check(int cudaError, const char *what);

struct GatedResidual {
  DConstMat residual, gate;
  int64_t rowsPerGate = 1;
};

//===----------------------------------------------------------------------===//
// Matrix products (cuBLASLt with fused epilogues)
//===----------------------------------------------------------------------===//

/// Owns the cuBLASLt handle and caches algorithm choices per shape.
class Gemm {
public:
  Gemm();
  ~Gemm();
  Gemm(const Gemm &) = delete;
  Gemm &operator=(const Gemm &) = delete;

  /// out (M x N) = act(a · wᵀ + bias), then the optional gated residual;
  /// `w` is N x K (nn.Linear layout). dtype is the element type of all
  /// operands. The residual may alias out. With `preact`, z = a · wᵀ + bias
  /// is also written there (apart from every other operand), for the
  /// backward pass.
  void run(Stream stream, DType dtype, DConstMat a, DConstMat w, const void *bias, Act act,
           const GatedResidual *epilogue, DMat out, Workspace ws, DMat preact = {});
  /// Scratch bytes run() needs for these sizes.
  static size_t workspaceBytes(int64_t m, int64_t n, int64_t k, bool epilogue, DType dtype);

  /// The general product out (M x N) = op(a) · op(b) + beta · out, where
  /// op(x) is x or xᵀ: a is M x K (K x M when transA), b is K x N (N x K
  /// when transB). Backward passes need all three forms (dA = dz·w,
  /// dW = dzᵀ·a). beta = 1 accumulates into out. Scratch: productWorkspaceBytes.
  /// With `geluGradAux` (f16/bf16, no transposes, beta 0; laid out like out,
  /// rows on 16 bytes): out = (a·b) ⊙ gelu_tanh'(aux), the derivative in
  /// cuBLASLt's DGELU epilogue.
  void product(Stream stream, DType dtype, DConstMat a, bool transA, DConstMat b, bool transB,
               DMat out, float beta, Workspace ws, DConstMat geluGradAux = {});
  static size_t productWorkspaceBytes();

private:
  struct Impl;
  Impl *impl;
};

/// SwiGLU feed-forward down · (silu(gate · x) ⊙ (up · x)) with the optional
/// gated residual; gate/up F x K (up may point into the same packed weight),
/// down N x F.
void swiglu(Stream stream, Gemm &gemm, DType dtype, DConstMat x, DConstMat gate, DConstMat up,
            DConstMat down, const GatedResidual *epilogue, DMat out, Workspace ws);
size_t swigluWorkspaceBytes(int64_t rows, int64_t hidden, int64_t out, DType dtype);

//===----------------------------------------------------------------------===//
// Memory-bound kernels
//===----------------------------------------------------------------------===//

struct NormArgs {
  NormKind kind = NormKind::Layer;
  int64_t group = 0;
  float eps = 1e-6f;
  const void *weight = nullptr, *bias = nullptr;
  DConstMat shift, scale;
  int64_t rowsPerSample = 1;
  DConstMat siluGate;
  /// kern.norm's residual form: with `residual`, the rows normalised are
  /// sum = residual + residualGate[r / (rows / residualGate.rows)] ⊙ x,
  /// written to `sum` (which may be the residual itself, not x or out).
  DConstMat residual, residualGate;
  DMat sum;
};
void norm(Stream stream, DType dtype, DConstMat x, const NormArgs &args, DMat out);

/// In place.
void activate(Stream stream, DType dtype, void *x, int64_t n, Act act);
void modulate(Stream stream, DType dtype, DConstMat x, DConstMat shift, DConstMat scale,
              int64_t rowsPerSample, DMat out);
void gatedResidual(Stream stream, DType dtype, DConstMat residual, DConstMat gate, DConstMat y,
                   int64_t rowsPerSample, DMat out);
/// Element-type conversion of n contiguous values.
void cast(Stream stream, DType from, const void *in, DType to, void *out, int64_t n);

//===----------------------------------------------------------------------===//
// Generated kernels
//===----------------------------------------------------------------------===//

/// An operand of a generated element-wise kernel: `rows` rows of the
/// result's columns `ld` elements apart (rows broadcast: row r reads row
/// r mod rows), or a single element.
struct PointwiseOperand {
  const void *data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 1, ld = 0;
  bool single = false;
};

/// The generated kernels of one artifact: its CUDA source (Plan::deviceCode)
/// compiled through NVRTC for the current device. Compiled code is cached
/// under $DIFFC_CACHE_DIR, else $XDG_CACHE_HOME/diffc, else
/// $HOME/.cache/diffc, keyed by a hash of the source, the GPU architecture
/// and the NVRTC version; a cache entry that is unreadable or fails its
/// checksum is rebuilt, and entries are written to a temporary file and
/// renamed. `what` names the artifact in errors.
class GeneratedKernels {
public:
  GeneratedKernels(const std::string &source, const std::string &what);
  ~GeneratedKernels();
  GeneratedKernels(const GeneratedKernels &) = delete;
  GeneratedKernels &operator=(const GeneratedKernels &) = delete;

  /// Launches the kern.pointwise function `name` over a rows x cols result
  /// (8 elements per thread where every operand's rows are aligned runs of
  /// a multiple of 8, else 1).
  void pointwise(Stream stream, const std::string &name, const PointwiseOperand *inputs, size_t count,
                 const PointwiseOperand &out, int64_t rows, int64_t cols);

  /// Whether the code came from the on-disk cache rather than NVRTC.
  bool fromCache() const { return cached; }
  /// The cache file used ("" when no cache directory could be made).
  const std::string &cachePath() const { return cacheFile; }

private:
  void *module = nullptr;
  std::string what, cacheFile;
  bool cached = false;
  int smCount = 1;
  std::vector<std::pair<std::string, void *>> functions;
  void *function(const std::string &name);
};

//===----------------------------------------------------------------------===//
// Token mixers
//===----------------------------------------------------------------------===//

/// Flash attention (online softmax, f32 statistics), head dims 64, 72, 88,
/// 128 natively (any multiple of 8 up to 128), lq != lk allowed, q/k/v may be
/// column slices of a packed projection. With `logsumexp` (batch·heads·lq
/// floats, index (b·heads + h)·lq + i) also writes each row's natural-log
/// log-sum-exp of the scaled scores (see cpu::attention), which
/// attentionBackward can take instead of recomputing it.
void attention(Stream stream, DType dtype, DConstMat q, DConstMat k, DConstMat v, int64_t batch,
               int64_t lq, int64_t lk, int64_t heads, float scale, DMat out,
               float *logsumexp = nullptr);

/// Chunked causal gated linear attention (spec 5.2), decays in f32.
void gla(Stream stream, DType dtype, DConstMat q, DConstMat k, DConstMat v, DConstMat gateLogits,
         int64_t batch, int64_t t, int64_t heads, float scale, float normalizer, int64_t chunk,
         DMat out, Workspace ws);
size_t glaWorkspaceBytes(int64_t batch, int64_t t, int64_t heads, int64_t dk, int64_t dv,
                         int64_t chunk);

//===----------------------------------------------------------------------===//
// Token layout and embeddings
//===----------------------------------------------------------------------===//

void reorderTokens(Stream stream, DType dtype, DConstMat x, int64_t batch, int64_t h, int64_t w,
                   ScanOrder from, ScanOrder to, DMat out);
void depthwiseConv(Stream stream, DType dtype, DConstMat x, int64_t batch, int64_t h, int64_t w,
                   const void *weight, const void *bias, int64_t k, ScanOrder from, ScanOrder to,
                   DMat out);
/// x NCHW in dtype; writes tokens (batch·T) x d; adds pos (T x d) if given.
void patchEmbed(Stream stream, Gemm &gemm, DType dtype, const void *x, int64_t batch, int64_t c,
                int64_t height, int64_t width, const void *weight, const void *bias, int64_t d,
                int64_t p, const void *pos, DMat out, Workspace ws);
size_t patchEmbedWorkspaceBytes(int64_t batch, int64_t c, int64_t height, int64_t width,
                                int64_t p, DType dtype);
void unpatchify(Stream stream, DType dtype, DConstMat x, int64_t batch, int64_t h, int64_t w,
                int64_t p, int64_t c, void *out);
/// Index errors cannot be thrown from the device: invalid indices set a
/// device flag that `indexErrorCheck` reads (once per call of an entry).
void maskTokens(Stream stream, DType dtype, DConstMat x, const int32_t *keep, int64_t batch,
                int64_t tokens, int64_t kept, DMat out, int32_t *errorFlag);
void unmaskTokens(Stream stream, DType dtype, DConstMat x, const int32_t *keep, int64_t batch,
                  int64_t tokens, int64_t kept, DMat out, int32_t *errorFlag);
void tokenMean(Stream stream, DType dtype, DConstMat x, int64_t batch, int64_t tokens, DMat out);
/// f32 table.
void sincosPosEmbed(Stream stream, int64_t h, int64_t w, int64_t d, double interpScale, float *out);
/// f32 in, f32 out.
void timestepEmbed(Stream stream, const float *t, int64_t batch, int64_t dim, double maxPeriod,
                   float *out);
void labelEmbed(Stream stream, DType dtype, const int32_t *labels, int64_t batch, const void *table,
                int64_t numClasses, int64_t d, void *out, int32_t *errorFlag);

//===----------------------------------------------------------------------===//
// Mixtures of experts (device-side routing, no host synchronisation)
//===----------------------------------------------------------------------===//

struct TokenChoiceArgs {
  const void *router = nullptr;
  int64_t experts = 0, hidden = 0, topK = 2;
  bool normalize = false;
  const void *gate = nullptr, *up = nullptr, *down = nullptr;
  const void *sharedGate = nullptr, *sharedUp = nullptr, *sharedDown = nullptr;
  int64_t sharedHidden = 0;
  const GatedResidual *epilogue = nullptr;
  /// Optional device array of `experts` int64 counts of routed slots.
  int64_t *routedCounts = nullptr;
  /// Training: moeTokenChoiceActivationElements(...) elements of dtype in
  /// kern.moe's C5 layout (SwiGLU experts), which the forward writes (in
  /// the backward's stable slot order) and the backward reads instead of
  /// recomputing the expert products. Null: the forward keeps nothing and
  /// the backward recomputes.
  void *activations = nullptr;
};
void moeTokenChoice(Stream stream, Gemm &gemm, DType dtype, DConstMat x,
                    const TokenChoiceArgs &args, DMat out, Workspace ws);
/// keepActivations: the size for a forward given args.activations.
size_t moeTokenChoiceWorkspaceBytes(int64_t tokens, int64_t d, const TokenChoiceArgs &args,
                                    DType dtype, bool keepActivations = false);
int64_t moeTokenChoiceActivationElements(int64_t tokens, int64_t d, const TokenChoiceArgs &args);

struct ExpertChoiceArgs {
  const void *router = nullptr;
  int64_t experts = 0, hidden = 0, tokens = 0;
  double capacity = 2.0;
  bool inOut = true;
  Act act = Act::Gelu;
  const void *w1 = nullptr, *w2 = nullptr;
  const GatedResidual *epilogue = nullptr;
};
void moeExpertChoice(Stream stream, Gemm &gemm, DType dtype, DConstMat x,
                     const ExpertChoiceArgs &args, DMat out, Workspace ws);
size_t moeExpertChoiceWorkspaceBytes(int64_t rows, int64_t d, const ExpertChoiceArgs &args,
                                     DType dtype);

//===----------------------------------------------------------------------===//
// Training inputs
//===----------------------------------------------------------------------===//

/// One input written by noisedInputs: samples x perSample elements of
/// `dtype` (f32, bf16 or f16) viewed as rows of `cols` with leading
/// dimension `ld`. A mix reads its per-sample coefficients (a, b, c) from
/// coef[3 s .. 3 s + 2] on the device.
struct NoisedTarget {
  enum class Kind { Data, Noise, Mix } kind = Kind::Data;
  void *data = nullptr;
  int64_t cols = 1, ld = 1;
  DType dtype = DType::F32;
  const double *coef = nullptr;
};
constexpr int kMaxNoisedTargets = 4;
/// A training step's noised inputs (diffrt::NoisedInputs) from the clean
/// data x0 (f32, on the device): the noise is drawn here, element i from
/// Philox block i / 2 of (seed, philoxStream) as Rng.h specifies, and each
/// target gets the data, the noise or c·(a·x0 + b·noise) in float64
/// without fused multiply-adds, the values the host computes.
void noisedInputs(Stream stream, const float *x0, int64_t samples, int64_t perSample, uint64_t seed,
                  uint64_t philoxStream, const NoisedTarget *targets, int count);

} // namespace diffrt::cuda

#endif // DIFFRT_CUDAKERNELS_H
