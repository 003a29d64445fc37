//===- CpuKernels.h - reference kernels of the CPU backend ------*- C++ -*-===//
//
// One function per kernel-level operation of the compiled program, in
// float32. These are the CPU backend and the oracle every GPU kernel is
// checked against, so each states its semantics exactly. Dense-layer
// products go through OpenBLAS; the per-head products of attention and GLA,
// and the rest, are threaded with parallelFor.
//
// Matrices are row-major views with a leading dimension (`ld`, the distance
// between rows in elements), so a kernel can read a column slice of a wider
// buffer (q, k and v inside a packed qkv projection; the six adaLN vectors
// inside one modulation matrix) without a copy.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_CPUKERNELS_H
#define DIFFRT_CPUKERNELS_H

#include <cstdint>
#include <functional>

namespace diffrt {
struct PwProgram;
}

namespace diffrt::cpu {

/// Read-only row-major matrix view: element (r, c) is data[r * ld + c].
struct ConstMat {
  const float *data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  const float *row(int64_t r) const { return data + r * ld; }
  bool empty() const { return data == nullptr; }
};

/// Writable row-major matrix view.
struct Mat {
  float *data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  float *row(int64_t r) const { return data + r * ld; }
  operator ConstMat() const { return {data, rows, cols, ld}; }
};

/// Contiguous views.
inline ConstMat constMat(const float *data, int64_t rows, int64_t cols) {
  return {data, rows, cols, cols};
}
inline Mat mat(float *data, int64_t rows, int64_t cols) { return {data, rows, cols, cols}; }

/// Runs body(begin, end) over [0, n) split into contiguous chunks on the
/// runtime's worker threads (DIFFRT_NUM_THREADS, default: hardware threads).
/// Chunks are at least `grain` long. Runs inline when n <= grain.
void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)> &body);

enum class Act : int32_t { None = 0, Gelu = 1, GeluTanh = 2, Silu = 3 };

/// Applies `act` in place to n values.
void activate(float *x, int64_t n, Act act);

//===----------------------------------------------------------------------===//
// Matrix products
//===----------------------------------------------------------------------===//

/// Epilogue of a matrix product: out = residual + gate[r / rowsPerGate] ⊙ y
/// where y is the activated product. `residual` (rows x cols) may alias
/// `out`; `gate` has rows / rowsPerGate rows.
struct GatedResidual {
  ConstMat residual;
  ConstMat gate;
  int64_t rowsPerGate = 1;
};

/// out (M x N) = act(a (M x K) · wᵀ + bias), then the optional gated
/// residual. `w` is N x K row-major (nn.Linear layout), `bias` N or null.
/// With `preact`, z = a · wᵀ + bias is also written there (M x N, apart
/// from every other operand): gemmBackward reads it instead of recomputing.
void gemm(ConstMat a, ConstMat w, const float *bias, Act act, const GatedResidual *epilogue,
          Mat out, Mat preact = {});

/// SwiGLU feed-forward: out = down · (silu(gate · x) ⊙ (up · x)), then the
/// optional gated residual. gate and up are F x K, down is N x F. `scratch`
/// must hold 2·M·F floats.
void swiglu(ConstMat x, ConstMat gate, ConstMat up, ConstMat down, const GatedResidual *epilogue,
            float *scratch, Mat out);

//===----------------------------------------------------------------------===//
// Normalisation and element-wise
//===----------------------------------------------------------------------===//

enum class NormKind : int32_t { Layer = 0, Rms = 1 };

/// Fused normalisation of each contiguous group of `group` elements of every
/// row of x (rows x cols, cols divisible by group), in this order:
///   layer: y = (x - mean) / sqrt(var + eps)   (biased variance)
///   rms:   y = x / sqrt(mean(x²) + eps)
///   y = y · weight[j % group] + bias[j % group]   (each optional: null)
///   y = y · (1 + scale[r / rowsPerSample][j]) + shift[r / rowsPerSample][j]
///       (when shift/scale are non-empty; each has rows / rowsPerSample rows)
///   y = y · silu(siluGate[r][j])               (when siluGate is non-empty)
/// Statistics in double-free float32 with a two-pass mean/variance.
struct NormArgs {
  NormKind kind = NormKind::Layer;
  int64_t group = 0;
  float eps = 1e-6f;
  const float *weight = nullptr;
  const float *bias = nullptr;
  ConstMat shift, scale;
  int64_t rowsPerSample = 1;
  ConstMat siluGate;
};
void norm(ConstMat x, const NormArgs &args, Mat out);

/// A generated element-wise kernel (diffrt/Pointwise.h): out[r][c] = the
/// program's last value with input i read at (r mod inputs[i].rows, c), or
/// at (0, 0) for a single-element input. out may alias an input with its
/// shape.
void pointwise(const PwProgram &program, const ConstMat *inputs, Mat out);

/// out[r][j] = x[r][j] · (1 + scale[r / rowsPerSample][j]) + shift[r / rowsPerSample][j].
void modulate(ConstMat x, ConstMat shift, ConstMat scale, int64_t rowsPerSample, Mat out);

/// out[r][j] = residual[r][j] + gate[r / rowsPerSample][j] · y[r][j]. out may
/// alias residual.
void gatedResidual(ConstMat residual, ConstMat gate, ConstMat y, int64_t rowsPerSample, Mat out);

//===----------------------------------------------------------------------===//
// Token mixers
//===----------------------------------------------------------------------===//

/// Multi-head attention. q: (batch·lq) x (heads·dk), k: (batch·lk) x
/// (heads·dk), v: (batch·lk) x (heads·dv), out: (batch·lq) x (heads·dv).
/// For each sample b and head h: out = softmax(scale · q kᵀ) v over all lk
/// keys, softmax with the max subtracted, accumulated in float32. With
/// `logsumexp` (batch·heads·lq floats, index (b·heads + h)·lq + i), also
/// writes log Σ_j exp(scale · q_i·k_j) (kern.attention's statistics).
void attention(ConstMat q, ConstMat k, ConstMat v, int64_t batch, int64_t lq, int64_t lk,
               int64_t heads, float scale, Mat out, float *logsumexp = nullptr);

/// Causal gated linear attention (spec 5.2). q, k, gateLogits: (batch·t) x
/// (heads·dk); v: (batch·t) x (heads·dv); out: (batch·t) x (heads·dv).
/// Per sample and head, g_t = logsigmoid(gateLogits_t) / normalizer,
/// S_t = diag(exp(g_t)) S_{t-1} + k_tᵀ v_t, o_t = (scale·q_t) S_t, S_0 = 0,
/// computed in the chunk-parallel form with chunk length `chunk` (relative
/// decays exp(b_j - b_i) for i <= j, never exp(-b_i) alone).
void gla(ConstMat q, ConstMat k, ConstMat v, ConstMat gateLogits, int64_t batch, int64_t t,
         int64_t heads, float scale, float normalizer, int64_t chunk, Mat out);

/// The same function by the step-by-step recurrence, for tests.
void glaRecurrent(ConstMat q, ConstMat k, ConstMat v, ConstMat gateLogits, int64_t batch,
                  int64_t t, int64_t heads, float scale, float normalizer, Mat out);

//===----------------------------------------------------------------------===//
// Token layout
//===----------------------------------------------------------------------===//

/// Scan orders of an h x w grid (see dit.reorder_tokens): the sequence
/// position of grid cell (r, c).
enum class ScanOrder : int32_t { RowMajor = 0, RowMajorReversed = 1, ColMajor = 2, ColMajorReversed = 3 };
int64_t scanPosition(ScanOrder order, int64_t h, int64_t w, int64_t r, int64_t c);

/// x: (batch·h·w) x d with tokens in order `from`; out: the same tokens in
/// order `to`. out must not alias x.
void reorderTokens(ConstMat x, int64_t batch, int64_t h, int64_t w, ScanOrder from, ScanOrder to,
                   Mat out);

/// Depth-wise k x k convolution (stride 1, zero padding k/2, bias) of x:
/// (batch·h·w) x d read as an h x w grid in row-major sequence order.
/// weight: d·k·k (PyTorch's (d, 1, k, k)), bias: d. The result token at
/// sequence position s is written to row permute(s) of out, where permute
/// maps order `from` to order `to` (from == to: identity), so a following
/// scan-order change costs nothing.
void depthwiseConv(ConstMat x, int64_t batch, int64_t h, int64_t w, const float *weight,
                   const float *bias, int64_t k, ScanOrder from, ScanOrder to, Mat out);

/// Patch embedding: x (batch, c, H, W) contiguous NCHW, weight (d, c, p, p),
/// bias d; out: (batch·(H/p)·(W/p)) x d, tokens row-major over the patch
/// grid. When pos is non-null (T x d) it is added to every sample.
void patchEmbed(const float *x, int64_t batch, int64_t c, int64_t height, int64_t width,
                const float *weight, const float *bias, int64_t d, int64_t p, const float *pos,
                Mat out);

/// Unpatchify: x (batch·h·w) x (p·p·c) to out (batch, c, h·p, w·p) NCHW:
/// element (i·p + j)·c + ch of token r·w + col goes to pixel (ch, r·p+i, col·p+j).
void unpatchify(ConstMat x, int64_t batch, int64_t h, int64_t w, int64_t p, int64_t c,
                float *out);

/// Gathers kept tokens: out[b·kept + j] = x[b·tokens + keep[b·kept + j]].
/// Throws diffrt::Error naming the sample and index if an index is outside
/// [0, tokens) or repeated within a sample.
void maskTokens(ConstMat x, const int32_t *keep, int64_t batch, int64_t tokens, int64_t kept,
                Mat out);

/// Scatters kept tokens back: out rows (batch·tokens) are zero except
/// out[b·tokens + keep[b·kept + j]] = x[b·kept + j]. Same index checks.
void unmaskTokens(ConstMat x, const int32_t *keep, int64_t batch, int64_t tokens, int64_t kept,
                  Mat out);

/// out[b] = mean over the `tokens` rows of sample b of x ((batch·tokens) x d).
void tokenMean(ConstMat x, int64_t batch, int64_t tokens, Mat out);

//===----------------------------------------------------------------------===//
// Embeddings
//===----------------------------------------------------------------------===//

/// The (h·w) x d f32 sin-cos table of spec 1.1 with positions divided by
/// interpScale, computed in double.
void sincosPosEmbed(int64_t h, int64_t w, int64_t d, double interpScale, float *out);

/// out (batch x dim): [cos(t·f), sin(t·f)], f_k = exp(-ln(maxPeriod)·k/half),
/// half = dim/2, zero column appended when dim is odd. t·f in float32 as the
/// references compute it.
void timestepEmbed(const float *t, int64_t batch, int64_t dim, double maxPeriod, float *out);

/// out[b] = table[labels[b]] (table has numClasses + 1 rows of width d).
/// Throws diffrt::Error naming the sample if a label is outside [0, numClasses].
void labelEmbed(const int32_t *labels, int64_t batch, const float *table, int64_t numClasses,
                int64_t d, float *out);

//===----------------------------------------------------------------------===//
// Mixtures of experts
//===----------------------------------------------------------------------===//

/// Token-choice MoE over the rows of x (tokens x d): p = softmax(router·x)
/// (router: e x d), the topK largest probabilities select experts (ties:
/// lower expert index first), weights are the probabilities (divided by
/// their sum when normalize). y = Σ weight · down_e(silu(gate_e x) ⊙ up_e x)
/// with gate/up: e x f x d, down: e x d x f (nn.Linear layout per expert).
/// When sharedGate is non-null, adds the unweighted shared SwiGLU expert
/// (sharedGate/sharedUp: fs x d, sharedDown: d x fs). Then the optional
/// gated residual. If `routedCounts` is non-null it receives the number of
/// slots routed to each expert (e values).
struct TokenChoiceArgs {
  const float *router = nullptr;
  int64_t experts = 0, hidden = 0, topK = 2;
  bool normalize = false;
  const float *gate = nullptr, *up = nullptr, *down = nullptr;
  const float *sharedGate = nullptr, *sharedUp = nullptr, *sharedDown = nullptr;
  int64_t sharedHidden = 0;
  const GatedResidual *epilogue = nullptr;
  int64_t *routedCounts = nullptr;
};
void moeTokenChoice(ConstMat x, const TokenChoiceArgs &args, Mat out);

/// Expert-choice MoE (MicroDiT), routing within each sample of `tokens`
/// rows: p = softmax(router·x) per token; expert e picks the
/// k = int(capacity·tokens/e) tokens with the largest p[:, e] (ties: lower
/// token index first) and adds p · W2ᵀ act(W1ᵀ x) to them. w1/w2 layout:
/// inOut = true: w1 e x d x f, w2 e x f x d (einsum parameters);
/// inOut = false: w1 e x f x d, w2 e x d x f. act is Gelu or GeluTanh.
/// Then the optional gated residual.
struct ExpertChoiceArgs {
  const float *router = nullptr;
  int64_t experts = 0, hidden = 0, tokens = 0;
  double capacity = 2.0;
  bool inOut = true;
  Act act = Act::Gelu;
  const float *w1 = nullptr, *w2 = nullptr;
  const GatedResidual *epilogue = nullptr;
};
void moeExpertChoice(ConstMat x, const ExpertChoiceArgs &args, Mat out);

} // namespace diffrt::cpu

#endif // DIFFRT_CPUKERNELS_H
