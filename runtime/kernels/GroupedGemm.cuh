//===- GroupedGemm.cuh - grouped matrix products of the MoE kernels -*- CUDA -*-===//
//
// One launch multiplies every group (expert) of rows by that group's own
// weight matrix, with group boundaries read on the device: the grid is the
// worst case (ceil(rows / BM) + groups row tiles, times the column tiles),
// and each tile finds its group and row range from the device offsets and
// exits early when it lies past the last group. No host synchronisation.
//
// Rows of A may be gathered through a device index (rowIndex), which fuses
// the MoE token permutation into the first product's loads. B is per group
// either N x K (nn.Linear layout, "NK") or K x N ("KN", the einsum layout of
// MicroDiT's experts). Epilogues: plain store, an activation, or SwiGLU,
// where the tile multiplies A by two weight matrices (gate and up) at once
// and stores silu(A·gateᵀ) ⊙ (A·upᵀ).
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_KERNELS_GROUPEDGEMM_CUH
#define DIFFRT_KERNELS_GROUPEDGEMM_CUH

#include "Common.cuh"

namespace diffrt::cuda::grouped {

enum class BLayout : int { NK = 0, KN = 1 };
enum class Epilogue : int { Store = 0, Act = 1, SwiGlu = 2 };

struct GroupedGemmArgs {
  DType dtype = DType::BF16;
  /// A: rows x K. Row r is read at a + idx(r)·lda with idx(r) = rowIndex[r]
  /// when rowIndex is non-null (device int32), else r.
  const void *a = nullptr;
  int64_t lda = 0;
  const int32_t *rowIndex = nullptr;
  /// B of group g starts at b + g·groupStrideB (elements); rows of ldb
  /// elements (K for NK, N for KN). b2 is the second (up) matrix of SwiGLU,
  /// same layout and strides.
  const void *b = nullptr, *b2 = nullptr;
  int64_t ldb = 0, groupStrideB = 0;
  BLayout layout = BLayout::NK;
  /// C: rows x N, row-major with ldc.
  void *c = nullptr;
  int64_t ldc = 0;
  /// SwiGLU only, optional: the pre-activations G = A·Bᵀ and U = A·B2ᵀ,
  /// stored beside C = silu(G) ⊙ U with C's shape and ldc (training keeps
  /// them for the backward).
  void *cGate = nullptr, *cUp = nullptr;
  int64_t n = 0, k = 0;
  /// Group g owns rows [offsets[g], offsets[g+1]) when offsets (device
  /// int32, groups + 1 values) is non-null, else [g·groupRows, (g+1)·groupRows).
  const int32_t *offsets = nullptr;
  int64_t groupRows = 0;
  int groups = 0;
  /// Total rows over all groups, or an upper bound (sizes the grid).
  int64_t maxRows = 0;
  Epilogue epilogue = Epilogue::Store;
  Act act = Act::None;
};

/// Enqueues the grouped product on `stream`.
void groupedGemm(Stream stream, const GroupedGemmArgs &args);

} // namespace diffrt::cuda::grouped

#endif // DIFFRT_KERNELS_GROUPEDGEMM_CUH
