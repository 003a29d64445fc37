//===- GradGla.cpp - backward of gated linear attention on the CPU --------===//
//
// The exact gradient of gla() (spec 5.2). The chunk-parallel forward and the
// recurrence S_t = diag(α_t) S_{t-1} + k_tᵀ v_t, o_t = scale·q_t S_t are the
// same function, so the gradient is derived from the recurrence. With dS_t
// the gradient reaching S_t (from o_t and, through S_{t+1}, from later
// steps):
//   dS_t = scale·q_tᵀ dO_t + diag(α_{t+1}) dS_{t+1}        (reverse time)
//   dq_t = scale·dO_t S_tᵀ,  dk_t = dS_t v_t,  dv_t = k_t dS_t
//   dα_t = rowsum(dS_t ⊙ S_{t-1}),  α_t = exp(logsigmoid(a_t)/normalizer)
//   da_t = dα_t·α_t·sigmoid(−a_t)/normalizer.
// dα_t is formed from S_{t-1} directly rather than through the identity
// d(cumulative log-decay) = q ⊙ dq − k ⊙ dk, whose reverse prefix sums
// cancel to nothing for the early tokens (the first gate's exact gradient
// is 0) and so would be all rounding error there.
//
// One task per (sample, head): a forward sweep produces dq and keeps the
// state at every chunk boundary; the reverse sweep recomputes a chunk's
// states from its checkpoint (the same arithmetic, so the same values) and
// steps back through it. Cost O(T·dk·dv) per head, memory
// (T/chunk + chunk + 1)·dk·dv floats per task.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CpuGradKernels.h"

#include "Internal.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace diffrt::cpu {

using namespace detail;

void glaBackward(ConstMat q, ConstMat k, ConstMat v, ConstMat gateLogits, int64_t batch, int64_t t,
                 int64_t heads, float scale, float normalizer, int64_t chunk, ConstMat dOut, Mat dQ,
                 Mat dK, Mat dV, Mat dGateLogits) {
  const char *kernel = "glaBackward";
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "t", t);
  checkPositive(kernel, "heads", heads);
  checkPositive(kernel, "chunk", chunk);
  if (!(normalizer > 0.0f))
    fail(kernel, ": gate normalizer must be positive, got ", normalizer);
  if (q.cols % heads != 0 || v.cols % heads != 0)
    fail(kernel, ": ", heads, " heads do not divide the q width ", q.cols, " or the v width ",
         v.cols);
  int64_t dk = q.cols / heads, dv = v.cols / heads;
  checkView(kernel, "q", q, batch * t, heads * dk);
  checkView(kernel, "k", k, batch * t, heads * dk);
  checkView(kernel, "gateLogits", gateLogits, batch * t, heads * dk);
  checkView(kernel, "v", v, batch * t, heads * dv);
  checkView(kernel, "dOut", dOut, batch * t, heads * dv);
  bool wantQ = dQ.data != nullptr, wantK = dK.data != nullptr, wantV = dV.data != nullptr;
  bool wantG = dGateLogits.data != nullptr;
  if (wantQ)
    checkView(kernel, "dQ", dQ, batch * t, heads * dk);
  if (wantK)
    checkView(kernel, "dK", dK, batch * t, heads * dk);
  if (wantV)
    checkView(kernel, "dV", dV, batch * t, heads * dv);
  if (wantG)
    checkView(kernel, "dGateLogits", dGateLogits, batch * t, heads * dk);
  for (ConstMat g : {ConstMat(dQ), ConstMat(dK), ConstMat(dV), ConstMat(dGateLogits)})
    if (overlaps(g, q) || overlaps(g, k) || overlaps(g, v) || overlaps(g, gateLogits) ||
        overlaps(g, dOut))
      fail(kernel, ": a gradient overlaps an input or dOut");

  int64_t c = std::min(chunk, t), chunks = (t + c - 1) / c, stateLen = dk * dv;
  float invNorm = 1.0f / normalizer;
  bool reverse = wantK || wantV || wantG;

  parallelFor(batch * heads, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> state(static_cast<size_t>(stateLen)), dS(state.size());
    std::vector<float> checkpoints(static_cast<size_t>(reverse ? chunks * stateLen : 0));
    std::vector<float> states(static_cast<size_t>(reverse ? (c + 1) * stateLen : 0));
    std::vector<float> alpha(static_cast<size_t>(c * dk)), dAlpha(static_cast<size_t>(dk));
    // α of the rows of one chunk, as exp(logsigmoid(a)/normalizer).
    auto loadAlpha = [&](int64_t row0, int64_t len, int64_t h) {
      for (int64_t j = 0; j < len; ++j) {
        const float *ar = gateLogits.row(row0 + j) + h * dk;
        for (int64_t ch = 0; ch < dk; ++ch)
          alpha[j * dk + ch] = std::exp(logSigmoid(ar[ch]) * invNorm);
      }
    };
    // s_next = diag(α) s_prev + kᵀ v for one row.
    auto step = [&](const float *prev, float *next, const float *al, const float *kr,
                    const float *vr) {
      for (int64_t ch = 0; ch < dk; ++ch) {
        float a = al[ch], kc = kr[ch];
        const float *sp = prev + ch * dv;
        float *sn = next + ch * dv;
        for (int64_t e = 0; e < dv; ++e)
          sn[e] = a * sp[e] + kc * vr[e];
      }
    };

    for (int64_t p = p0; p < p1; ++p) {
      int64_t bi = p / heads, h = p % heads;
      // Forward sweep: checkpoints at chunk starts, dq_t = scale·S_t dO_tᵀ.
      std::fill(state.begin(), state.end(), 0.0f);
      for (int64_t ci = 0; ci < chunks; ++ci) {
        int64_t s0 = ci * c, len = std::min(c, t - s0), row0 = bi * t + s0;
        if (reverse)
          std::copy(state.begin(), state.end(), checkpoints.begin() + ci * stateLen);
        loadAlpha(row0, len, h);
        for (int64_t j = 0; j < len; ++j) {
          int64_t row = row0 + j;
          step(state.data(), state.data(), &alpha[j * dk], k.row(row) + h * dk,
               v.row(row) + h * dv);
          if (!wantQ)
            continue;
          const float *dOr = dOut.row(row) + h * dv;
          float *dq = dQ.row(row) + h * dk;
          for (int64_t ch = 0; ch < dk; ++ch) {
            const float *sr = &state[ch * dv];
            float acc = 0.0f;
            for (int64_t e = 0; e < dv; ++e)
              acc += sr[e] * dOr[e];
            dq[ch] = scale * acc;
          }
        }
      }
      if (!reverse)
        continue;

      // Reverse sweep.
      std::fill(dS.begin(), dS.end(), 0.0f);
      for (int64_t ci = chunks - 1; ci >= 0; --ci) {
        int64_t s0 = ci * c, len = std::min(c, t - s0), row0 = bi * t + s0;
        loadAlpha(row0, len, h);
        std::copy(checkpoints.begin() + ci * stateLen, checkpoints.begin() + (ci + 1) * stateLen,
                  states.begin());
        for (int64_t j = 0; j < len; ++j)
          step(&states[j * stateLen], &states[(j + 1) * stateLen], &alpha[j * dk],
               k.row(row0 + j) + h * dk, v.row(row0 + j) + h * dv);
        for (int64_t j = len - 1; j >= 0; --j) {
          int64_t row = row0 + j;
          const float *qr = q.row(row) + h * dk, *kr = k.row(row) + h * dk;
          const float *vr = v.row(row) + h * dv, *dOr = dOut.row(row) + h * dv;
          const float *prev = &states[j * stateLen];
          // dS_t = scale·q_tᵀ dO_t + (α_{t+1}-scaled dS_{t+1}, already in dS).
          for (int64_t ch = 0; ch < dk; ++ch) {
            float w = scale * qr[ch];
            float *d = &dS[ch * dv];
            for (int64_t e = 0; e < dv; ++e)
              d[e] += w * dOr[e];
          }
          float *dkr = wantK ? dK.row(row) + h * dk : nullptr;
          float *dvr = wantV ? dV.row(row) + h * dv : nullptr;
          if (wantV)
            std::fill(dvr, dvr + dv, 0.0f);
          for (int64_t ch = 0; ch < dk; ++ch) {
            const float *d = &dS[ch * dv], *sp = prev + ch * dv;
            float accK = 0.0f, accA = 0.0f;
            for (int64_t e = 0; e < dv; ++e) {
              accK += d[e] * vr[e];
              accA += d[e] * sp[e];
            }
            if (wantK)
              dkr[ch] = accK;
            dAlpha[ch] = accA;
            if (wantV) {
              float kc = kr[ch];
              for (int64_t e = 0; e < dv; ++e)
                dvr[e] += kc * d[e];
            }
          }
          const float *al = &alpha[j * dk];
          if (wantG) {
            const float *ar = gateLogits.row(row) + h * dk;
            float *dg = dGateLogits.row(row) + h * dk;
            // d logsigmoid(a)/da = sigmoid(−a); α = exp(logsigmoid(a)/n).
            for (int64_t ch = 0; ch < dk; ++ch)
              dg[ch] = dAlpha[ch] * al[ch] * sigmoid(-ar[ch]) * invNorm;
          }
          // Carry to t − 1: S_t depends on S_{t-1} through diag(α_t).
          for (int64_t ch = 0; ch < dk; ++ch) {
            float a = al[ch];
            float *d = &dS[ch * dv];
            for (int64_t e = 0; e < dv; ++e)
              d[e] *= a;
          }
        }
      }
    }
  });
}

} // namespace diffrt::cpu
