//===- Moe.cpp - mixtures of experts on the CPU -----------------*- C++ -*-===//
//
// Token choice (DiT-MoE, spec 3.2) and expert choice (MicroDiT, spec 4.6).
// Both route first, then group the selected (token, expert) pairs by expert,
// gather each expert's rows into a contiguous block and run the expert as
// sgemm calls on that block, writing its outputs to a per-slot buffer.
// A final threaded pass per token sums the token's weighted slots in a fixed
// order (deterministic whatever the thread count), adds the shared expert
// and applies the gated residual. The output is written only in that last
// pass, so it may alias the input or the residual.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"
#include "Simd.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace diffrt::cpu {

using namespace detail;

namespace detail {

Scratch routerProbs(ConstMat x, const float *router, int64_t e) {
  int64_t rows = x.rows, d = x.cols;
  Scratch probs = scratch(rows * e);
  sgemmNT(rows, e, d, 1.0f, x.data, x.ld, router, d, 0.0f, probs.get(), e);
  parallelFor(rows, rowGrain(e * 8), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float *p = probs.get() + r * e;
      float mx = p[0];
      for (int64_t i = 1; i < e; ++i)
        mx = std::max(mx, p[i]);
      float total = 0.0f;
      for (int64_t i = 0; i < e; ++i) {
        p[i] = std::exp(p[i] - mx);
        total += p[i];
      }
      float inv = 1.0f / total;
      for (int64_t i = 0; i < e; ++i)
        p[i] *= inv;
    }
  });
  return probs;
}

void gatherRows(ConstMat x, const int64_t *rows, int64_t n, float *dst) {
  int64_t d = x.cols;
  parallelFor(n, rowGrain(d), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      std::copy(x.row(rows[i]), x.row(rows[i]) + d, dst + i * d);
  });
}

TopKRouting routeTopK(ConstMat x, const float *router, int64_t e, int64_t topK, bool normalize) {
  int64_t m = x.rows;
  TopKRouting r;
  r.probs = routerProbs(x, router, e);
  r.chosen.resize(static_cast<size_t>(m * topK));
  r.weight.resize(r.chosen.size());
  r.totals.resize(static_cast<size_t>(m));
  parallelFor(m, rowGrain(e * topK), [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const float *p = r.probs.get() + row * e;
      int32_t *ids = &r.chosen[row * topK];
      float *w = &r.weight[row * topK];
      float total = 0.0f;
      for (int64_t s = 0; s < topK; ++s) {
        int32_t best = -1;
        for (int64_t i = 0; i < e; ++i) {
          if (std::find(ids, ids + s, static_cast<int32_t>(i)) != ids + s)
            continue;
          if (best < 0 || rankKey(p[i]) > rankKey(p[best]))
            best = static_cast<int32_t>(i);
        }
        ids[s] = best;
        w[s] = p[best];
        total += p[best];
      }
      r.totals[row] = total;
      if (normalize)
        for (int64_t s = 0; s < topK; ++s)
          w[s] /= total;
    }
  });
  r.count.assign(static_cast<size_t>(e), 0);
  r.offset.assign(static_cast<size_t>(e) + 1, 0);
  for (int32_t id : r.chosen)
    ++r.count[id];
  for (int64_t i = 0; i < e; ++i)
    r.offset[i + 1] = r.offset[i] + r.count[i];
  r.slotPosition.resize(r.chosen.size());
  r.groupedSlot.resize(r.chosen.size());
  r.groupedToken.resize(r.chosen.size());
  std::vector<int64_t> cursor(r.offset.begin(), r.offset.end() - 1);
  for (int64_t s = 0; s < m * topK; ++s) {
    int64_t pos = cursor[r.chosen[s]]++;
    r.slotPosition[s] = pos;
    r.groupedSlot[pos] = s;
    r.groupedToken[pos] = s / topK;
  }
  return r;
}

} // namespace detail

namespace {

/// y (n x d, contiguous) = down · (silu(gate · x) ⊙ up · x) for n rows of x
/// (leading dimension ldx), with nn.Linear-layout weights; h holds 2·n·f
/// floats.
void swigluRows(const float *x, int64_t ldx, int64_t n, int64_t d, int64_t f, const float *gate,
                const float *up, const float *down, float *h, float *y) {
  float *g = h, *u = h + n * f;
  sgemmNT(n, f, d, 1.0f, x, ldx, gate, d, 0.0f, g, f);
  sgemmNT(n, f, d, 1.0f, x, ldx, up, d, 0.0f, u, f);
  parallelFor(n * f, kElementGrain,
              [&](int64_t b, int64_t e) { simd::siluMul(g + b, u + b, e - b); });
  sgemmNT(n, d, f, 1.0f, g, f, down, f, 0.0f, y, d);
}

} // namespace

void moeTokenChoice(ConstMat x, const TokenChoiceArgs &args, Mat out) {
  const char *kernel = "moeTokenChoice";
  int64_t m = x.rows, d = x.cols, e = args.experts, f = args.hidden, topK = args.topK;
  checkView(kernel, "x", x, m, d);
  checkView(kernel, "out", out, m, d);
  checkPositive(kernel, "experts", e);
  checkPositive(kernel, "hidden", f);
  if (topK < 1 || topK > e)
    fail(kernel, ": topK ", topK, " is outside [1, ", e, "]");
  if (args.router == nullptr || args.gate == nullptr || args.up == nullptr ||
      args.down == nullptr)
    fail(kernel, ": null router or expert weights");
  bool shared = args.sharedGate != nullptr;
  if (shared) {
    if (args.sharedUp == nullptr || args.sharedDown == nullptr)
      fail(kernel, ": sharedGate is set but sharedUp or sharedDown is null");
    checkPositive(kernel, "sharedHidden", args.sharedHidden);
  }
  checkEpilogue(kernel, args.epilogue, m, d);

  // Routing: per token, the topK experts (ties to the lower index) and
  // their weights, in selection order.
  TopKRouting routing = routeTopK(x, args.router, e, topK, args.normalize);
  const std::vector<float> &weight = routing.weight;
  const std::vector<int64_t> &count = routing.count, &offset = routing.offset;
  const std::vector<int64_t> &slotRow = routing.slotPosition, &groupedToken = routing.groupedToken;
  if (args.routedCounts != nullptr)
    std::copy(count.begin(), count.end(), args.routedCounts);

  int64_t maxCount = *std::max_element(count.begin(), count.end());
  Scratch xs = scratch(maxCount * d), h = scratch(maxCount * 2 * f);
  Scratch y = scratch(m * topK * d);
  for (int64_t i = 0; i < e; ++i) {
    int64_t n = count[i];
    if (n == 0)
      continue;
    gatherRows(x, &groupedToken[offset[i]], n, xs.get());
    swigluRows(xs.get(), d, n, d, f, args.gate + i * f * d, args.up + i * f * d,
               args.down + i * d * f, h.get(), y.get() + offset[i] * d);
  }

  Scratch sharedY;
  if (shared) {
    int64_t fs = args.sharedHidden;
    sharedY = scratch(m * d);
    Scratch hs = scratch(m * 2 * fs);
    swigluRows(x.data, x.ld, m, d, fs, args.sharedGate, args.sharedUp, args.sharedDown, hs.get(),
               sharedY.get());
  }

  const GatedResidual *epi = args.epilogue;
  parallelFor(m, rowGrain(d * topK), [&](int64_t r0, int64_t r1) {
    std::vector<float> acc(static_cast<size_t>(d));
    for (int64_t r = r0; r < r1; ++r) {
      if (shared)
        std::copy(sharedY.get() + r * d, sharedY.get() + (r + 1) * d, acc.begin());
      else
        std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t s = 0; s < topK; ++s) {
        float w = weight[r * topK + s];
        const float *yr = y.get() + slotRow[r * topK + s] * d;
        for (int64_t j = 0; j < d; ++j)
          acc[j] += w * yr[j];
      }
      simd::finishRow(acc.data(), nullptr, Act::None, epi ? epi->residual.row(r) : nullptr,
                epi ? epi->gate.row(r / epi->rowsPerGate) : nullptr, out.row(r), d);
    }
  });
}

void moeExpertChoice(ConstMat x, const ExpertChoiceArgs &args, Mat out) {
  const char *kernel = "moeExpertChoice";
  int64_t m = x.rows, d = x.cols, e = args.experts, f = args.hidden, tokens = args.tokens;
  checkView(kernel, "x", x, m, d);
  checkView(kernel, "out", out, m, d);
  checkPositive(kernel, "experts", e);
  checkPositive(kernel, "hidden", f);
  checkPositive(kernel, "tokens", tokens);
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
  // int(capacity · T / E) as the reference's Python computes it.
  double perExpert = args.capacity * static_cast<double>(tokens) / static_cast<double>(e);
  if (!(perExpert >= 1.0) || perExpert >= static_cast<double>(tokens) + 1.0)
    fail(kernel, ": int(capacity ", args.capacity, " x ", tokens, " tokens / ", e,
         " experts) must lie in [1, ", tokens, "]");
  int64_t k = static_cast<int64_t>(perExpert);
  checkEpilogue(kernel, args.epilogue, m, d);
  int64_t batch = m / tokens;

  // Selection per (expert, sample): the k tokens with the largest
  // probability for that expert, ties to the lower token index. Rows are
  // laid out expert-major so each expert's rows form one block.
  Scratch probs = routerProbs(x, args.router, e);
  int64_t perExpertRows = batch * k;
  std::vector<int64_t> rows(static_cast<size_t>(e * perExpertRows));
  parallelFor(e * batch, 1, [&](int64_t t0, int64_t t1) {
    std::vector<int64_t> order(static_cast<size_t>(tokens));
    for (int64_t task = t0; task < t1; ++task) {
      int64_t ei = task / batch, b = task % batch;
      const float *p = probs.get() + b * tokens * e + ei;
      std::iota(order.begin(), order.end(), int64_t{0});
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int64_t a, int64_t c) {
                          float pa = rankKey(p[a * e]), pc = rankKey(p[c * e]);
                          return pa > pc || (pa == pc && a < c);
                        });
      for (int64_t j = 0; j < k; ++j)
        rows[ei * perExpertRows + b * k + j] = b * tokens + order[j];
    }
  });

  // slot[token · e + expert]: the expert's output row for the token, or -1.
  std::vector<int64_t> slot(static_cast<size_t>(m * e), -1);
  for (int64_t ei = 0; ei < e; ++ei)
    for (int64_t j = 0; j < perExpertRows; ++j)
      slot[rows[ei * perExpertRows + j] * e + ei] = ei * perExpertRows + j;

  Scratch xs = scratch(perExpertRows * d), h = scratch(perExpertRows * f);
  Scratch y = scratch(e * perExpertRows * d);
  for (int64_t ei = 0; ei < e; ++ei) {
    const float *w1 = args.w1 + ei * d * f, *w2 = args.w2 + ei * f * d;
    float *ye = y.get() + ei * perExpertRows * d;
    gatherRows(x, &rows[ei * perExpertRows], perExpertRows, xs.get());
    if (args.inOut)
      sgemmNN(perExpertRows, f, d, 1.0f, xs.get(), d, w1, f, 0.0f, h.get(), f);
    else
      sgemmNT(perExpertRows, f, d, 1.0f, xs.get(), d, w1, d, 0.0f, h.get(), f);
    activate(h.get(), perExpertRows * f, args.act);
    if (args.inOut)
      sgemmNN(perExpertRows, d, f, 1.0f, h.get(), f, w2, d, 0.0f, ye, d);
    else
      sgemmNT(perExpertRows, d, f, 1.0f, h.get(), f, w2, f, 0.0f, ye, d);
  }

  const GatedResidual *epi = args.epilogue;
  parallelFor(m, rowGrain(d * 2), [&](int64_t r0, int64_t r1) {
    std::vector<float> acc(static_cast<size_t>(d));
    for (int64_t r = r0; r < r1; ++r) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t ei = 0; ei < e; ++ei) {
        int64_t s = slot[r * e + ei];
        if (s < 0)
          continue;
        float w = probs[r * e + ei];
        const float *yr = y.get() + s * d;
        for (int64_t j = 0; j < d; ++j)
          acc[j] += w * yr[j];
      }
      simd::finishRow(acc.data(), nullptr, Act::None, epi ? epi->residual.row(r) : nullptr,
                epi ? epi->gate.row(r / epi->rowsPerGate) : nullptr, out.row(r), d);
    }
  });
}

} // namespace diffrt::cpu
