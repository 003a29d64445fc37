//===- GradMoe.cpp - backward of the mixtures of experts on the CPU -------===//
//
// Token choice (DiT-MoE, spec 3.2) and expert choice (MicroDiT, spec 4.6).
// The routing is recomputed with the forward's own arithmetic (the same
// product, softmax and tie-breaking), so the same experts and tokens are
// selected. Selection is piecewise constant: the gradient flows through the
// selected experts' outputs and through the router probabilities that
// weight them, then through the softmax into the router and the input.
//
// Experts run one after another, each as BLAS products on its gathered rows
// (forward recomputation, routing-weight gradient, SwiGLU / MLP backward);
// the rows an expert holds belong to distinct tokens, so its input-gradient
// rows are added into dX in a threaded pass without conflicts, and the
// expert order fixes the order of every sum. The DiT-MoE balance loss
// (coefficient · Σ_i f_i·P̄_i, f the routed-slot fractions times E with no
// gradient, P̄ the mean probability over all M tokens) contributes
// coefficient·f_i/M to the gradient of every token's probability of
// expert i before the softmax backward.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CpuGradKernels.h"

#include "Internal.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace diffrt::cpu {

using namespace detail;

namespace {

/// dX row rows[i] += src row i; the rows are distinct.
void scatterAddRows(const float *src, const int64_t *rows, int64_t n, Mat dX) {
  int64_t d = dX.cols;
  parallelFor(n, rowGrain(d), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float *o = dX.row(rows[i]);
      const float *s = src + i * d;
      for (int64_t j = 0; j < d; ++j)
        o[j] += s[j];
    }
  });
}

/// dy = gate ⊙ dOut under an epilogue (in `buf`), else dOut itself.
ConstMat epilogueInputGrad(const GatedResidual *epi, ConstMat dOut, Scratch &buf) {
  if (epi == nullptr)
    return dOut;
  int64_t m = dOut.rows, d = dOut.cols;
  buf = scratch(m * d);
  parallelFor(m, rowGrain(d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *g = epi->gate.row(r / epi->rowsPerGate), *dr = dOut.row(r);
      float *o = buf.get() + r * d;
      for (int64_t j = 0; j < d; ++j)
        o[j] = g[j] * dr[j];
    }
  });
  return constMat(buf.get(), m, d);
}

/// dEpilogueGate = Σ_{rows of a gate row} dOut ⊙ y.
void epilogueGateGrad(const GatedResidual *epi, ConstMat dOut, const float *y, Mat dGate) {
  int64_t m = dOut.rows, d = dOut.cols;
  groupColumnSums(
      m, d, epi->rowsPerGate,
      [&](int64_t r, int64_t j0, int64_t j1, double *acc) {
        const float *dr = dOut.row(r), *yr = y + r * d;
        for (int64_t j = j0; j < j1; ++j)
          acc[j - j0] += static_cast<double>(dr[j] * yr[j]);
      },
      StoreSums{dGate});
}

/// dp (rows x e) becomes the gradient of the router logits: the softmax
/// Jacobian p ⊙ (dp − Σ_i p_i dp_i) per row.
void softmaxBackward(const float *probs, float *dp, int64_t rows, int64_t e) {
  parallelFor(rows, rowGrain(e * 4), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *p = probs + r * e;
      float *g = dp + r * e;
      double dot = 0.0;
      for (int64_t i = 0; i < e; ++i)
        dot += static_cast<double>(p[i]) * g[i];
      float fdot = static_cast<float>(dot);
      for (int64_t i = 0; i < e; ++i)
        g[i] = p[i] * (g[i] - fdot);
    }
  });
}

/// From the logits' gradient: dRouter = dlogitᵀ·x, dX += dlogit·router.
void routerBackward(ConstMat x, const float *router, const float *dLogits, int64_t e,
                    float *dRouter, Mat dX) {
  int64_t m = x.rows, d = x.cols;
  if (dRouter != nullptr)
    sgemmTN(e, d, m, 1.0f, dLogits, e, x.data, x.ld, 0.0f, dRouter, d, nullptr, 0);
  if (dX.data != nullptr)
    sgemmNN(m, d, e, 1.0f, dLogits, e, router, d, 1.0f, dX.data, dX.ld);
}

float dotRow(const float *a, const float *b, int64_t n) {
  double acc = 0.0;
  for (int64_t j = 0; j < n; ++j)
    acc += static_cast<double>(a[j]) * b[j];
  return static_cast<float>(acc);
}

} // namespace

void moeTokenChoiceBackward(ConstMat x, const TokenChoiceArgs &args, ConstMat dOut,
                            const TokenChoiceGrads &grads) {
  const char *kernel = "moeTokenChoiceBackward";
  int64_t m = x.rows, d = x.cols, e = args.experts, f = args.hidden, topK = args.topK;
  checkView(kernel, "x", x, m, d);
  checkView(kernel, "dOut", dOut, m, d);
  checkPositive(kernel, "experts", e);
  checkPositive(kernel, "hidden", f);
  if (topK < 1 || topK > e)
    fail(kernel, ": topK ", topK, " is outside [1, ", e, "]");
  if (args.router == nullptr || args.gate == nullptr || args.up == nullptr || args.down == nullptr)
    fail(kernel, ": null router or expert weights");
  bool shared = args.sharedGate != nullptr;
  int64_t fs = args.sharedHidden;
  if (shared) {
    if (args.sharedUp == nullptr || args.sharedDown == nullptr)
      fail(kernel, ": sharedGate is set but sharedUp or sharedDown is null");
    checkPositive(kernel, "sharedHidden", fs);
  } else if (grads.dSharedGate != nullptr || grads.dSharedUp != nullptr ||
             grads.dSharedDown != nullptr) {
    fail(kernel, ": shared-expert gradients are wanted but there is no shared expert");
  }
  const GatedResidual *epi = args.epilogue;
  checkEpilogue(kernel, epi, m, d);
  bool wantX = grads.dX.data != nullptr;
  if (wantX)
    checkView(kernel, "dX", grads.dX, m, d);
  bool wantEpiGate = grads.dEpilogueGate.data != nullptr;
  if (wantEpiGate) {
    if (epi == nullptr)
      fail(kernel, ": dEpilogueGate is wanted but there is no gated-residual epilogue");
    checkPerSample(kernel, "dEpilogueGate", grads.dEpilogueGate, m, epi->rowsPerGate, d);
  }
  if (!(grads.balanceCoef >= 0.0))
    fail(kernel, ": balance coefficient must be non-negative, got ", grads.balanceCoef);
  if (wantX && (overlaps(grads.dX, x) || overlaps(grads.dX, dOut)))
    fail(kernel, ": dX overlaps x or dOut");
  bool wantExpertW = grads.dGate != nullptr || grads.dUp != nullptr || grads.dDown != nullptr;
  if (m == 0) {
    if (grads.balanceLoss != nullptr)
      *grads.balanceLoss = 0.0f;
    return;
  }

  // Routing, exactly as the forward.
  TopKRouting routing = routeTopK(x, args.router, e, topK, args.normalize);
  const Scratch &probs = routing.probs;
  const std::vector<int32_t> &chosen = routing.chosen;
  const std::vector<float> &weight = routing.weight, &totals = routing.totals;
  const std::vector<int64_t> &count = routing.count, &offset = routing.offset;
  const std::vector<int64_t> &groupedSlot = routing.groupedSlot, &groupedToken = routing.groupedToken;

  Scratch dyBuf, yBuf;
  ConstMat dy = epilogueInputGrad(epi, dOut, dyBuf);
  if (wantEpiGate)
    yBuf = scratch(m * d);

  // Shared expert: unweighted, every token. It also initialises dX.
  if (shared && (wantX || wantEpiGate || grads.dSharedGate != nullptr ||
                 grads.dSharedUp != nullptr || grads.dSharedDown != nullptr)) {
    Scratch hs = scratch(4 * m * fs);
    float *g = hs.get(), *u = g + m * fs, *h = u + m * fs, *work = h + m * fs;
    ConstMat sGate = constMat(args.sharedGate, fs, d), sUp = constMat(args.sharedUp, fs, d);
    ConstMat sDown = constMat(args.sharedDown, d, fs);
    swigluHidden(x, sGate, sUp, g, u, h);
    if (wantEpiGate)
      sgemmNT(m, d, fs, 1.0f, h, fs, sDown.data, fs, 0.0f, yBuf.get(), d);
    swigluBackwardFromHidden(x, sGate, sUp, sDown, dy, g, u, h, work, grads.dX, false,
                             Mat{grads.dSharedGate, fs, d, d}, Mat{grads.dSharedUp, fs, d, d},
                             Mat{grads.dSharedDown, d, fs, fs});
  } else {
    if (wantX)
      zeroMat(grads.dX.data, m, d, grads.dX.ld);
    if (wantEpiGate)
      std::fill(yBuf.get(), yBuf.get() + m * d, 0.0f);
  }

  // Routed experts: recompute, routing-weight gradient, SwiGLU backward.
  std::vector<float> dw(chosen.size());
  int64_t maxCount = *std::max_element(count.begin(), count.end());
  Scratch xs = scratch(maxCount * d), hid = scratch(4 * maxCount * f);
  Scratch ye = scratch(maxCount * d), dxs = scratch(wantX ? maxCount * d : 0);
  for (int64_t i = 0; i < e; ++i) {
    int64_t n = count[i];
    ConstMat gateI = constMat(args.gate + i * f * d, f, d),
             upI = constMat(args.up + i * f * d, f, d);
    ConstMat downI = constMat(args.down + i * d * f, d, f);
    Mat dGateI{grads.dGate ? grads.dGate + i * f * d : nullptr, f, d, d};
    Mat dUpI{grads.dUp ? grads.dUp + i * f * d : nullptr, f, d, d};
    Mat dDownI{grads.dDown ? grads.dDown + i * d * f : nullptr, d, f, f};
    if (n == 0) {
      zeroMat(dGateI.data, f, d, d);
      zeroMat(dUpI.data, f, d, d);
      zeroMat(dDownI.data, d, f, f);
      continue;
    }
    const int64_t *tokens = &groupedToken[offset[i]], *slots = &groupedSlot[offset[i]];
    gatherRows(x, tokens, n, xs.get());
    ConstMat xsMat = constMat(xs.get(), n, d);
    float *g = hid.get(), *u = g + n * f, *h = u + n * f, *work = h + n * f;
    swigluHidden(xsMat, gateI, upI, g, u, h);
    sgemmNT(n, d, f, 1.0f, h, f, downI.data, f, 0.0f, ye.get(), d);
    // Per row: the weight's gradient dy·Y, the output for the epilogue, then
    // the expert output's gradient w·dy in place of Y.
    parallelFor(n, rowGrain(d * 2), [&](int64_t i0, int64_t i1) {
      for (int64_t ii = i0; ii < i1; ++ii) {
        int64_t s = slots[ii], r = tokens[ii];
        float *yr = ye.get() + ii * d;
        const float *dyr = dy.row(r);
        dw[s] = dotRow(dyr, yr, d);
        float w = weight[s];
        if (wantEpiGate) {
          float *acc = yBuf.get() + r * d;
          for (int64_t j = 0; j < d; ++j)
            acc[j] += w * yr[j];
        }
        for (int64_t j = 0; j < d; ++j)
          yr[j] = w * dyr[j];
      }
    });
    if (!wantX && !wantExpertW)
      continue;
    swigluBackwardFromHidden(xsMat, gateI, upI, downI, constMat(ye.get(), n, d), g, u, h, work,
                             Mat{wantX ? dxs.get() : nullptr, n, d, d}, false, dGateI, dUpI,
                             dDownI);
    if (wantX)
      scatterAddRows(dxs.get(), tokens, n, grads.dX);
  }

  // Gradient of the probabilities: the routing weights (with the top-k
  // renormalisation's Jacobian) and the balance loss.
  bool balance = grads.balanceCoef > 0.0;
  std::vector<double> meanProb;
  std::vector<double> balanceGrad(static_cast<size_t>(e), 0.0);
  if (balance) {
    meanProb.assign(static_cast<size_t>(e), 0.0);
    groupColumnSums(
        m, e, m,
        [&](int64_t r, int64_t j0, int64_t j1, double *acc) {
          const float *p = probs.get() + r * e;
          for (int64_t j = j0; j < j1; ++j)
            acc[j - j0] += p[j];
        },
        [&](int64_t, int64_t j, double v) { meanProb[j] = v / static_cast<double>(m); });
    double loss = 0.0;
    for (int64_t i = 0; i < e; ++i) {
      double fi =
          static_cast<double>(e) / static_cast<double>(topK * m) * static_cast<double>(count[i]);
      loss += fi * meanProb[i];
      balanceGrad[i] = grads.balanceCoef * fi / static_cast<double>(m);
    }
    if (grads.balanceLoss != nullptr)
      *grads.balanceLoss = static_cast<float>(grads.balanceCoef * loss);
  } else if (grads.balanceLoss != nullptr) {
    *grads.balanceLoss = 0.0f;
  }
  if (wantEpiGate)
    epilogueGateGrad(epi, dOut, yBuf.get(), grads.dEpilogueGate);
  if (grads.dRouter == nullptr && !wantX)
    return;

  Scratch dp = scratch(m * e);
  parallelFor(m, rowGrain(e * topK), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float *g = dp.get() + r * e;
      for (int64_t i = 0; i < e; ++i)
        g[i] = static_cast<float>(balanceGrad[i]);
      const int32_t *ids = &chosen[r * topK];
      const float *dwr = &dw[r * topK], *wr = &weight[r * topK];
      if (args.normalize) {
        // w_s = p_s / Σ p: dp_s = (dw_s − Σ_j dw_j w_j) / Σ p.
        double c = 0.0;
        for (int64_t s = 0; s < topK; ++s)
          c += static_cast<double>(dwr[s]) * wr[s];
        for (int64_t s = 0; s < topK; ++s)
          g[ids[s]] += static_cast<float>((dwr[s] - c) / totals[r]);
      } else {
        for (int64_t s = 0; s < topK; ++s)
          g[ids[s]] += dwr[s];
      }
    }
  });
  softmaxBackward(probs.get(), dp.get(), m, e);
  routerBackward(x, args.router, dp.get(), e, grads.dRouter, grads.dX);
}

void moeExpertChoiceBackward(ConstMat x, const ExpertChoiceArgs &args, ConstMat dOut,
                             const ExpertChoiceGrads &grads) {
  const char *kernel = "moeExpertChoiceBackward";
  int64_t m = x.rows, d = x.cols, e = args.experts, f = args.hidden, tokens = args.tokens;
  checkView(kernel, "x", x, m, d);
  checkView(kernel, "dOut", dOut, m, d);
  checkPositive(kernel, "experts", e);
  checkPositive(kernel, "hidden", f);
  checkPositive(kernel, "tokens", tokens);
  if (m % tokens != 0)
    fail(kernel, ": ", m, " rows are not a whole number of samples of ", tokens, " tokens");
  if (args.router == nullptr || args.w1 == nullptr || args.w2 == nullptr)
    fail(kernel, ": null router or expert weights");
  checkAct(kernel, args.act);
  double perExpert = args.capacity * static_cast<double>(tokens) / static_cast<double>(e);
  if (!(perExpert >= 1.0) || perExpert >= static_cast<double>(tokens) + 1.0)
    fail(kernel, ": int(capacity ", args.capacity, " x ", tokens, " tokens / ", e,
         " experts) must lie in [1, ", tokens, "]");
  int64_t k = static_cast<int64_t>(perExpert);
  const GatedResidual *epi = args.epilogue;
  checkEpilogue(kernel, epi, m, d);
  bool wantX = grads.dX.data != nullptr;
  if (wantX)
    checkView(kernel, "dX", grads.dX, m, d);
  bool wantEpiGate = grads.dEpilogueGate.data != nullptr;
  if (wantEpiGate) {
    if (epi == nullptr)
      fail(kernel, ": dEpilogueGate is wanted but there is no gated-residual epilogue");
    checkPerSample(kernel, "dEpilogueGate", grads.dEpilogueGate, m, epi->rowsPerGate, d);
  }
  if (wantX && (overlaps(grads.dX, x) || overlaps(grads.dX, dOut)))
    fail(kernel, ": dX overlaps x or dOut");
  int64_t batch = m / tokens;
  if (m == 0)
    return;

  // Selection, exactly as the forward: per (expert, sample) the k tokens of
  // largest probability, ties to the lower token index.
  Scratch probs = routerProbs(x, args.router, e);
  int64_t n = batch * k;
  std::vector<int64_t> rows(static_cast<size_t>(e * n));
  parallelFor(e * batch, 1, [&](int64_t t0, int64_t t1) {
    std::vector<int64_t> order(static_cast<size_t>(tokens));
    for (int64_t task = t0; task < t1; ++task) {
      int64_t ei = task / batch, b = task % batch;
      const float *p = probs.get() + b * tokens * e + ei;
      std::iota(order.begin(), order.end(), int64_t{0});
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t c) {
        float pa = rankKey(p[a * e]), pc = rankKey(p[c * e]);
        return pa > pc || (pa == pc && a < c);
      });
      for (int64_t j = 0; j < k; ++j)
        rows[ei * n + b * k + j] = b * tokens + order[j];
    }
  });

  Scratch dyBuf, yBuf;
  ConstMat dy = epilogueInputGrad(epi, dOut, dyBuf);
  if (wantEpiGate) {
    yBuf = scratch(m * d);
    std::fill(yBuf.get(), yBuf.get() + m * d, 0.0f);
  }
  if (wantX)
    zeroMat(grads.dX.data, m, d, grads.dX.ld);
  bool wantRouter = grads.dRouter != nullptr || wantX;
  Scratch dp = scratch(wantRouter ? m * e : 0);
  if (wantRouter)
    std::fill(dp.get(), dp.get() + m * e, 0.0f);

  // Per expert: z = x W1, a = act(z), Y = a W2 (layouts per inOut), then
  // dp = dy·Y, dY = p·dy, and the MLP backward.
  Scratch xs = scratch(n * d), z = scratch(n * f), a = scratch(n * f);
  Scratch ye = scratch(n * d), dxs = scratch(wantX ? n * d : 0);
  Scratch tbuf = scratch(n * std::max(d, f));
  for (int64_t ei = 0; ei < e; ++ei) {
    const float *w1 = args.w1 + ei * d * f, *w2 = args.w2 + ei * f * d;
    float *dW1 = grads.dW1 != nullptr ? grads.dW1 + ei * d * f : nullptr;
    float *dW2 = grads.dW2 != nullptr ? grads.dW2 + ei * f * d : nullptr;
    const int64_t *sel = &rows[ei * n];
    gatherRows(x, sel, n, xs.get());
    if (args.inOut)
      sgemmNN(n, f, d, 1.0f, xs.get(), d, w1, f, 0.0f, z.get(), f);
    else
      sgemmNT(n, f, d, 1.0f, xs.get(), d, w1, d, 0.0f, z.get(), f);
    std::copy(z.get(), z.get() + n * f, a.get());
    activate(a.get(), n * f, args.act);
    if (args.inOut)
      sgemmNN(n, d, f, 1.0f, a.get(), f, w2, d, 0.0f, ye.get(), d);
    else
      sgemmNT(n, d, f, 1.0f, a.get(), f, w2, f, 0.0f, ye.get(), d);
    parallelFor(n, rowGrain(d * 2), [&](int64_t i0, int64_t i1) {
      for (int64_t jj = i0; jj < i1; ++jj) {
        int64_t r = sel[jj];
        float *yr = ye.get() + jj * d;
        const float *dyr = dy.row(r);
        float p = probs[r * e + ei];
        if (wantRouter)
          dp[r * e + ei] = dotRow(dyr, yr, d);
        if (wantEpiGate) {
          float *acc = yBuf.get() + r * d;
          for (int64_t j = 0; j < d; ++j)
            acc[j] += p * yr[j];
        }
        for (int64_t j = 0; j < d; ++j)
          yr[j] = p * dyr[j];
      }
    });
    if (dW2 != nullptr) {
      if (args.inOut) // dW2 (f x d) = aᵀ dY
        sgemmTN(f, d, n, 1.0f, a.get(), f, ye.get(), d, 0.0f, dW2, d, tbuf.get(),
                n * std::max(d, f));
      else // dW2 (d x f) = dYᵀ a
        sgemmTN(d, f, n, 1.0f, ye.get(), d, a.get(), f, 0.0f, dW2, f, tbuf.get(),
                n * std::max(d, f));
    }
    if (dW1 == nullptr && !wantX)
      continue;
    // da = dY W2ᵀ (into a, no longer needed), dz = da ⊙ act'(z) (into z).
    if (args.inOut)
      sgemmNT(n, f, d, 1.0f, ye.get(), d, w2, d, 0.0f, a.get(), f);
    else
      sgemmNN(n, f, d, 1.0f, ye.get(), d, w2, f, 0.0f, a.get(), f);
    Act act = args.act;
    float *zp = z.get(), *ap = a.get();
    parallelFor(n * f, kElementGrain, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i)
        zp[i] = ap[i] * actDerivative(zp[i], act);
    });
    if (dW1 != nullptr) {
      if (args.inOut) // dW1 (d x f) = xsᵀ dz
        sgemmTN(d, f, n, 1.0f, xs.get(), d, zp, f, 0.0f, dW1, f, tbuf.get(), n * std::max(d, f));
      else // dW1 (f x d) = dzᵀ xs
        sgemmTN(f, d, n, 1.0f, zp, f, xs.get(), d, 0.0f, dW1, d, tbuf.get(), n * std::max(d, f));
    }
    if (!wantX)
      continue;
    if (args.inOut)
      sgemmNT(n, d, f, 1.0f, zp, f, w1, f, 0.0f, dxs.get(), d);
    else
      sgemmNN(n, d, f, 1.0f, zp, f, w1, d, 0.0f, dxs.get(), d);
    scatterAddRows(dxs.get(), sel, n, grads.dX);
  }

  if (wantEpiGate)
    epilogueGateGrad(epi, dOut, yBuf.get(), grads.dEpilogueGate);
  if (!wantRouter)
    return;
  softmaxBackward(probs.get(), dp.get(), m, e);
  routerBackward(x, args.router, dp.get(), e, grads.dRouter, grads.dX);
}

} // namespace diffrt::cpu
