//===- MoeSelect.cuh - routing shared by the MoE forward and backward ----===//
//
// The expert-choice selection (one block per sample and expert sorts the
// sample's router probabilities for that expert and keeps the top k), its
// capacity, the argument checks of both routings, and the ranking of router probabilities, used by Moe.cu and by GradMoe.cu,
// whose backward must reproduce the forward's selection exactly. Included
// by those two files only: the definitions live in an anonymous namespace
// so that each translation unit has its own copy of the kernel.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_KERNELS_MOESELECT_CUH
#define DIFFRT_KERNELS_MOESELECT_CUH

#include "Common.cuh"

namespace diffrt::cuda {
namespace {

/// The most experts the router kernels handle.
constexpr int kMaxExperts = 64;

/// The argument checks the token-choice forward and backward share;
/// returns whether there is a shared expert.
inline bool checkTokenChoice(const char *kernel, const TokenChoiceArgs &args) {
  const int64_t e = args.experts, f = args.hidden, topK = args.topK;
  checkDPositive(kernel, "experts", e);
  checkDPositive(kernel, "hidden", f);
  if (e > kMaxExperts)
    fail(kernel, ": ", e, " experts exceed the supported ", kMaxExperts);
  if (topK < 1 || topK > e)
    fail(kernel, ": topK ", topK, " is outside [1, ", e, "]");
  if (args.router == nullptr || args.gate == nullptr || args.up == nullptr ||
      args.down == nullptr)
    fail(kernel, ": null router or expert weights");
  const bool shared = args.sharedGate != nullptr;
  if (shared) {
    if (args.sharedUp == nullptr || args.sharedDown == nullptr)
      fail(kernel, ": sharedGate is set but sharedUp or sharedDown is null");
    checkDPositive(kernel, "sharedHidden", args.sharedHidden);
  }
  return shared;
}

/// k = int(capacity · tokens / experts), the tokens each expert takes per
/// sample, as the reference's Python computes it; 0 when it is outside
/// [1, tokens].
inline int64_t expertCapacity(const ExpertChoiceArgs &a) {
  if (a.experts <= 0 || a.tokens <= 0)
    return 0;
  const double per = a.capacity * static_cast<double>(a.tokens) / static_cast<double>(a.experts);
  if (!(per >= 1.0) || per >= static_cast<double>(a.tokens) + 1.0)
    return 0;
  return static_cast<int64_t>(per);
}

/// The argument checks the expert-choice forward and backward share (m rows
/// of input); returns the per-sample capacity k.
inline int64_t checkExpertChoice(const char *kernel, int64_t m, const ExpertChoiceArgs &args) {
  const int64_t e = args.experts, f = args.hidden, tokens = args.tokens;
  checkDPositive(kernel, "experts", e);
  checkDPositive(kernel, "hidden", f);
  checkDPositive(kernel, "tokens", tokens);
  if (e > kMaxExperts)
    fail(kernel, ": ", e, " experts exceed the supported ", kMaxExperts);
  if (m % tokens != 0)
    fail(kernel, ": ", m, " rows are not a whole number of samples of ", tokens, " tokens");
  if (args.router == nullptr || args.w1 == nullptr || args.w2 == nullptr)
    fail(kernel, ": null router or expert weights");
  switch (args.act) {
  case Act::None:
  case Act::Gelu:
  case Act::GeluTanh:
  case Act::Silu:
    break;
  default:
    fail(kernel, ": unknown activation ", static_cast<int32_t>(args.act));
  }
  const int64_t k = expertCapacity(args);
  if (k == 0)
    fail(kernel, ": int(capacity ", args.capacity, " x ", tokens, " tokens / ", e,
         " experts) must lie in [1, ", tokens, "]");
  return k;
}

/// Router probabilities in rank order: NaN ranked lowest (as cpu::rankKey).
__device__ __forceinline__ float rankKey(float p) { return isnan(p) ? -INFINITY : p; }

constexpr int kSelectThreads = 1024;

/// Sort key: probability first (NaN ranked as -inf, like cpu::rankKey),
/// then the complemented token index, so that a descending sort puts ties
/// in ascending token order. Padding keys are 0, below every real key.
__device__ __forceinline__ unsigned long long selectKey(float prob, int64_t token) {
  const float r = rankKey(prob);
  const unsigned bits = __float_as_uint(r);
  const unsigned ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<unsigned long long>(ordered) << 32) |
         static_cast<unsigned>(0xFFFFFFFFu - static_cast<unsigned>(token));
}

__global__ void __launch_bounds__(kSelectThreads)
    selectKernel(const float *probs, int64_t tokens, int experts, int64_t batch, int64_t k,
                 int pow2, int32_t *rows, int32_t *slotMap) {
  extern __shared__ unsigned long long keys[];
  const int64_t b = blockIdx.x / experts;
  const int e = static_cast<int>(blockIdx.x % experts);
  const int tid = threadIdx.x;
  for (int i = tid; i < pow2; i += kSelectThreads)
    keys[i] = i < tokens ? selectKey(probs[(b * tokens + i) * experts + e], i) : 0ull;
  __syncthreads();
  // Bitonic sort, descending overall.
  for (int size = 2; size <= pow2; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = tid; i < pow2; i += kSelectThreads) {
        const int j = i ^ stride;
        if (j > i) {
          const unsigned long long a = keys[i], c = keys[j];
          const bool descending = (i & size) == 0;
          if (descending ? a < c : a > c) {
            keys[i] = c;
            keys[j] = a;
          }
        }
      }
      __syncthreads();
    }
  }
  const int64_t perExpert = batch * k;
  for (int64_t j = tid; j < k; j += kSelectThreads) {
    const int64_t token = 0xFFFFFFFFu - static_cast<unsigned>(keys[j] & 0xFFFFFFFFull);
    const int64_t row = b * tokens + token;
    const int64_t slot = e * perExpert + b * k + j;
    rows[slot] = static_cast<int32_t>(row);
    slotMap[row * experts + e] = static_cast<int32_t>(slot);
  }
}

} // namespace
} // namespace diffrt::cuda

#endif // DIFFRT_KERNELS_MOESELECT_CUH
