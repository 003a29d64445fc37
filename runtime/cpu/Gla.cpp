//===- Gla.cpp - causal gated linear attention on the CPU -------*- C++ -*-===//
//
// DiG's token mixer (spec 5.2) in its chunk-parallel form and as the plain
// recurrence. One task per (sample, head) carries the dk x dv state through
// the sequence; inside a chunk the work is three small matrix products
// (inter-chunk read of the state, masked intra-chunk attention, state
// update) in the single-threaded kernels of Simd.h. All
// decay arithmetic is float32 and only relative decays exp(b_j - b_i) with
// i <= j (values in (0, 1]) are exponentiated, so no factor overflows
// however strong the decay.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"
#include "Simd.h"

#include <algorithm>
#include <vector>

namespace diffrt::cpu {

using namespace detail;

namespace {

struct GlaShape {
  int64_t dk, dv;
};

GlaShape checkGla(const char *kernel, ConstMat q, ConstMat k, ConstMat v, ConstMat gateLogits,
                  int64_t batch, int64_t t, int64_t heads, float normalizer, Mat out) {
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "t", t);
  checkPositive(kernel, "heads", heads);
  if (!(normalizer > 0.0f))
    fail(kernel, ": gate normalizer must be positive, got ", normalizer);
  if (q.cols % heads != 0 || v.cols % heads != 0)
    fail(kernel, ": ", heads, " heads do not divide the q width ", q.cols, " or the v width ",
         v.cols);
  GlaShape s{q.cols / heads, v.cols / heads};
  checkView(kernel, "q", q, batch * t, heads * s.dk);
  checkView(kernel, "k", k, batch * t, heads * s.dk);
  checkView(kernel, "gateLogits", gateLogits, batch * t, heads * s.dk);
  checkView(kernel, "v", v, batch * t, heads * s.dv);
  checkView(kernel, "out", out, batch * t, heads * s.dv);
  if (overlaps(out, q) || overlaps(out, k) || overlaps(out, v) || overlaps(out, gateLogits))
    fail(kernel, ": out overlaps an input");
  return s;
}

} // namespace

void gla(ConstMat q, ConstMat k, ConstMat v, ConstMat gateLogits, int64_t batch, int64_t t,
         int64_t heads, float scale, float normalizer, int64_t chunk, Mat out) {
  const char *kernel = "gla";
  GlaShape shape = checkGla(kernel, q, k, v, gateLogits, batch, t, heads, normalizer, out);
  checkPositive(kernel, "chunk", chunk);
  int64_t dk = shape.dk, dv = shape.dv;
  int64_t c = std::min(chunk, t);
  float invNorm = 1.0f / normalizer;

  parallelFor(batch * heads, 1, [&](int64_t p0, int64_t p1) {
    // Per task: the state (dk x dv); per chunk the scaled queries, keys and
    // cumulative log-decays b (c x dk each), the decayed queries, the masked
    // scores (c x c) and the decayed keys transposed (dk x c).
    std::vector<float> state(static_cast<size_t>(dk * dv));
    std::vector<float> qs(static_cast<size_t>(c * dk)), ks(qs.size()), b(qs.size()), qe(qs.size());
    std::vector<float> scores(static_cast<size_t>(c * c)), kdT(qs.size());
    std::vector<float> kd(static_cast<size_t>(dk));
    for (int64_t p = p0; p < p1; ++p) {
      int64_t bi = p / heads, h = p % heads;
      std::fill(state.begin(), state.end(), 0.0f);
      for (int64_t s0 = 0; s0 < t; s0 += c) {
        int64_t len = std::min(c, t - s0);
        int64_t row0 = bi * t + s0;
        for (int64_t j = 0; j < len; ++j) {
          const float *qr = q.row(row0 + j) + h * dk, *kr = k.row(row0 + j) + h * dk;
          const float *gr = gateLogits.row(row0 + j) + h * dk;
          float *qj = &qs[j * dk], *kj = &ks[j * dk], *bj = &b[j * dk];
          const float *prev = j > 0 ? &b[(j - 1) * dk] : nullptr;
          for (int64_t ch = 0; ch < dk; ++ch) {
            qj[ch] = scale * qr[ch];
            kj[ch] = kr[ch];
            float g = logSigmoid(gr[ch]) * invNorm;
            bj[ch] = prev != nullptr ? prev[ch] + g : g;
          }
        }
        const float *vc = v.row(row0) + h * dv;
        float *oc = out.row(row0) + h * dv;

        // Inter-chunk: o_j = (qs_j ⊙ e^{b_j}) S_prev.
        for (int64_t j = 0; j < len; ++j)
          simd::decayedScale(&qs[j * dk], &b[j * dk], nullptr, &qe[j * dk], dk);
        simd::gemm(len, dv, dk, qe.data(), dk, state.data(), dv, oc, out.ld, false);

        // Intra-chunk: o_j += Σ_{i<=j} (Σ_c qs_j k_i e^{b_j - b_i}) v_i, as a
        // product with the lower-triangular score matrix.
        for (int64_t j = 0; j < len; ++j) {
          float *row = &scores[j * len];
          simd::decayedDots(&qs[j * dk], ks.data(), &b[j * dk], b.data(), j + 1, dk, row);
          std::fill(row + j + 1, row + len, 0.0f);
        }
        simd::gemm(len, dv, len, scores.data(), len, vc, v.ld, oc, out.ld, true);

        // S_next = diag(e^{b_last}) S_prev + Σ_i (k_i ⊙ e^{b_last - b_i})ᵀ v_i.
        const float *bl = &b[(len - 1) * dk];
        for (int64_t ch = 0; ch < dk; ++ch) {
          float d = fastExp(bl[ch]);
          float *sr = &state[ch * dv];
          for (int64_t e = 0; e < dv; ++e)
            sr[e] *= d;
        }
        for (int64_t i = 0; i < len; ++i) {
          simd::decayedScale(&ks[i * dk], bl, &b[i * dk], kd.data(), dk);
          for (int64_t ch = 0; ch < dk; ++ch)
            kdT[ch * len + i] = kd[ch];
        }
        simd::gemm(dk, dv, len, kdT.data(), len, vc, v.ld, state.data(), dv, true);
      }
    }
  });
}

void glaRecurrent(ConstMat q, ConstMat k, ConstMat v, ConstMat gateLogits, int64_t batch,
                  int64_t t, int64_t heads, float scale, float normalizer, Mat out) {
  const char *kernel = "glaRecurrent";
  GlaShape shape = checkGla(kernel, q, k, v, gateLogits, batch, t, heads, normalizer, out);
  int64_t dk = shape.dk, dv = shape.dv;
  float invNorm = 1.0f / normalizer;
  parallelFor(batch * heads, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> state(static_cast<size_t>(dk * dv));
    for (int64_t p = p0; p < p1; ++p) {
      int64_t bi = p / heads, h = p % heads;
      std::fill(state.begin(), state.end(), 0.0f);
      for (int64_t step = 0; step < t; ++step) {
        int64_t row = bi * t + step;
        const float *qr = q.row(row) + h * dk, *kr = k.row(row) + h * dk;
        const float *gr = gateLogits.row(row) + h * dk, *vr = v.row(row) + h * dv;
        float *o = out.row(row) + h * dv;
        std::fill(o, o + dv, 0.0f);
        for (int64_t ch = 0; ch < dk; ++ch) {
          float alpha = std::exp(logSigmoid(gr[ch]) * invNorm);
          float kc = kr[ch], w = scale * qr[ch];
          float *sr = &state[ch * dv];
          for (int64_t e = 0; e < dv; ++e) {
            sr[e] = alpha * sr[e] + kc * vr[e];
            o[e] += w * sr[e];
          }
        }
      }
    }
  });
}

} // namespace diffrt::cpu
