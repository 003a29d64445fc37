//===- Layout.cpp - token layout kernels of the CPU backend -----*- C++ -*-===//
//
// Kernels that move tokens between layouts: DiG's scan orders and its
// depth-wise convolution (which writes straight into the next block's scan
// order), patch embedding and unpatchify between images and token rows,
// MicroDiT's token masking and unmasking, and the mean over tokens.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace diffrt::cpu {

using namespace detail;

namespace {

void checkOrder(const char *kernel, ScanOrder order) {
  switch (order) {
  case ScanOrder::RowMajor:
  case ScanOrder::RowMajorReversed:
  case ScanOrder::ColMajor:
  case ScanOrder::ColMajorReversed:
    return;
  }
  fail(kernel, ": unknown scan order ", static_cast<int32_t>(order));
}

int64_t positionOf(ScanOrder order, int64_t h, int64_t w, int64_t r, int64_t c) {
  switch (order) {
  case ScanOrder::RowMajor:
    return r * w + c;
  case ScanOrder::RowMajorReversed:
    return h * w - 1 - (r * w + c);
  case ScanOrder::ColMajor:
    return c * h + r;
  case ScanOrder::ColMajorReversed:
    return h * w - 1 - (c * h + r);
  }
  return -1;
}

/// The grid cell that `order` visits at sequence position s.
void cellAt(ScanOrder order, int64_t h, int64_t w, int64_t s, int64_t &r, int64_t &c) {
  bool reversed = order == ScanOrder::RowMajorReversed || order == ScanOrder::ColMajorReversed;
  int64_t u = reversed ? h * w - 1 - s : s;
  if (order == ScanOrder::RowMajor || order == ScanOrder::RowMajorReversed) {
    r = u / w;
    c = u % w;
  } else {
    c = u / h;
    r = u % h;
  }
}

/// Position in order `to` of the token at position s in order `from`.
int64_t permuted(ScanOrder from, ScanOrder to, int64_t h, int64_t w, int64_t s) {
  if (from == to)
    return s;
  int64_t r, c;
  cellAt(from, h, w, s, r, c);
  return positionOf(to, h, w, r, c);
}

void copyRow(const float *src, float *dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

/// Validates keep (batch x kept indices into `tokens` rows per sample) and
/// returns its inverse: for each (sample, token) the kept slot or -1.
std::vector<int32_t> invertKeep(const char *kernel, const int32_t *keep, int64_t batch,
                                int64_t tokens, int64_t kept) {
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "tokens", tokens);
  if (kept < 0 || kept > tokens)
    fail(kernel, ": kept count ", kept, " is outside [0, ", tokens, "]");
  if (keep == nullptr && kept > 0)
    fail(kernel, ": null keep indices");
  std::vector<int32_t> slot(static_cast<size_t>(batch * tokens), -1);
  for (int64_t b = 0; b < batch; ++b) {
    int32_t *inv = slot.data() + b * tokens;
    for (int64_t j = 0; j < kept; ++j) {
      int32_t idx = keep[b * kept + j];
      if (idx < 0 || idx >= tokens)
        fail(kernel, ": sample ", b, ": keep[", j, "] = ", idx, " is outside [0, ", tokens, ")");
      if (inv[idx] >= 0)
        fail(kernel, ": sample ", b, ": token ", idx, " is kept twice (keep[", inv[idx],
             "] and keep[", j, "])");
      inv[idx] = static_cast<int32_t>(j);
    }
  }
  return slot;
}

} // namespace

int64_t scanPosition(ScanOrder order, int64_t h, int64_t w, int64_t r, int64_t c) {
  checkOrder("scanPosition", order);
  if (h <= 0 || w <= 0 || r < 0 || r >= h || c < 0 || c >= w)
    fail("scanPosition: cell (", r, ", ", c, ") is outside the ", h, " x ", w, " grid");
  return positionOf(order, h, w, r, c);
}

void reorderTokens(ConstMat x, int64_t batch, int64_t h, int64_t w, ScanOrder from, ScanOrder to,
                   Mat out) {
  const char *kernel = "reorderTokens";
  checkOrder(kernel, from);
  checkOrder(kernel, to);
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "h", h);
  checkPositive(kernel, "w", w);
  int64_t tokens = h * w, d = x.cols;
  checkView(kernel, "x", x, batch * tokens, d);
  checkView(kernel, "out", out, batch * tokens, d);
  if (overlaps(x, out))
    fail(kernel, ": out overlaps x");
  parallelFor(batch * tokens, rowGrain(d), [&](int64_t s0, int64_t s1) {
    for (int64_t row = s0; row < s1; ++row) {
      int64_t b = row / tokens, s = row % tokens;
      copyRow(x.row(row), out.row(b * tokens + permuted(from, to, h, w, s)), d);
    }
  });
}

void depthwiseConv(ConstMat x, int64_t batch, int64_t h, int64_t w, const float *weight,
                   const float *bias, int64_t k, ScanOrder from, ScanOrder to, Mat out) {
  const char *kernel = "depthwiseConv";
  checkOrder(kernel, from);
  checkOrder(kernel, to);
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "h", h);
  checkPositive(kernel, "w", w);
  checkPositive(kernel, "k", k);
  if (k % 2 == 0)
    fail(kernel, ": kernel size ", k, " is even; 'same' padding k/2 needs an odd size");
  int64_t tokens = h * w, d = x.cols, taps = k * k, pad = k / 2;
  checkView(kernel, "x", x, batch * tokens, d);
  checkView(kernel, "out", out, batch * tokens, d);
  if (weight == nullptr)
    fail(kernel, ": null weight");
  if (overlaps(x, out))
    fail(kernel, ": out overlaps x");

  // Tap-major weights make the innermost loop run over contiguous channels.
  std::vector<float> wt(static_cast<size_t>(taps * d));
  for (int64_t ch = 0; ch < d; ++ch)
    for (int64_t tap = 0; tap < taps; ++tap)
      wt[tap * d + ch] = weight[ch * taps + tap];

  parallelFor(batch * tokens, rowGrain(d * taps), [&](int64_t s0, int64_t s1) {
    for (int64_t row = s0; row < s1; ++row) {
      int64_t b = row / tokens, s = row % tokens;
      int64_t r = s / w, c = s % w;
      float *o = out.row(b * tokens + permuted(from, to, h, w, s));
      if (bias != nullptr)
        std::copy(bias, bias + d, o);
      else
        std::fill(o, o + d, 0.0f);
      for (int64_t di = 0; di < k; ++di) {
        int64_t rr = r + di - pad;
        if (rr < 0 || rr >= h)
          continue;
        for (int64_t dj = 0; dj < k; ++dj) {
          int64_t cc = c + dj - pad;
          if (cc < 0 || cc >= w)
            continue;
          const float *xin = x.row(b * tokens + rr * w + cc);
          const float *wk = &wt[(di * k + dj) * d];
          for (int64_t ch = 0; ch < d; ++ch)
            o[ch] += wk[ch] * xin[ch];
        }
      }
    }
  });
}

void patchEmbed(const float *x, int64_t batch, int64_t c, int64_t height, int64_t width,
                const float *weight, const float *bias, int64_t d, int64_t p, const float *pos,
                Mat out) {
  const char *kernel = "patchEmbed";
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "channels", c);
  checkPositive(kernel, "d", d);
  checkPositive(kernel, "patch size", p);
  if (height <= 0 || width <= 0 || height % p != 0 || width % p != 0)
    fail(kernel, ": image ", height, " x ", width, " is not a positive multiple of patch size ",
         p);
  if (x == nullptr || weight == nullptr)
    fail(kernel, ": null image or weight");
  int64_t hp = height / p, wp = width / p, tokens = hp * wp, patchLen = c * p * p;
  checkView(kernel, "out", out, batch * tokens, d);

  // Patch rows in the (channel, row, column) order of the flattened
  // (d, c, p, p) weight, so the convolution is one product with wᵀ.
  Scratch patches = scratch(batch * tokens * patchLen);
  parallelFor(batch * tokens, rowGrain(patchLen), [&](int64_t t0, int64_t t1) {
    for (int64_t row = t0; row < t1; ++row) {
      int64_t b = row / tokens, pr = (row % tokens) / wp, pc = row % wp;
      float *dst = patches.get() + row * patchLen;
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t i = 0; i < p; ++i) {
          const float *src = x + ((b * c + ch) * height + pr * p + i) * width + pc * p;
          copyRow(src, dst + (ch * p + i) * p, p);
        }
    }
  });
  sgemmNT(batch * tokens, d, patchLen, 1.0f, patches.get(), patchLen, weight, patchLen, 0.0f,
          out.data, out.ld);
  if (bias == nullptr && pos == nullptr)
    return;
  parallelFor(batch * tokens, rowGrain(d), [&](int64_t t0, int64_t t1) {
    for (int64_t row = t0; row < t1; ++row) {
      float *o = out.row(row);
      if (bias != nullptr)
        for (int64_t j = 0; j < d; ++j)
          o[j] += bias[j];
      if (pos != nullptr) {
        const float *pr = pos + (row % tokens) * d;
        for (int64_t j = 0; j < d; ++j)
          o[j] += pr[j];
      }
    }
  });
}

void unpatchify(ConstMat x, int64_t batch, int64_t h, int64_t w, int64_t p, int64_t c,
                float *out) {
  const char *kernel = "unpatchify";
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "h", h);
  checkPositive(kernel, "w", w);
  checkPositive(kernel, "patch size", p);
  checkPositive(kernel, "channels", c);
  checkView(kernel, "x", x, batch * h * w, p * p * c);
  if (out == nullptr)
    fail(kernel, ": null output");
  int64_t height = h * p, width = w * p;
  // One task per output image row (sample, channel, pixel row): writes are
  // contiguous, reads gather one channel from the tokens of a patch row.
  parallelFor(batch * c * height, rowGrain(width), [&](int64_t i0, int64_t i1) {
    for (int64_t idx = i0; idx < i1; ++idx) {
      int64_t y = idx % height, ch = (idx / height) % c, b = idx / (height * c);
      int64_t r = y / p, i = y % p;
      float *dst = out + idx * width;
      for (int64_t col = 0; col < w; ++col) {
        const float *src = x.row(b * h * w + r * w + col) + i * p * c + ch;
        for (int64_t j = 0; j < p; ++j)
          dst[col * p + j] = src[j * c];
      }
    }
  });
}

void maskTokens(ConstMat x, const int32_t *keep, int64_t batch, int64_t tokens, int64_t kept,
                Mat out) {
  const char *kernel = "maskTokens";
  invertKeep(kernel, keep, batch, tokens, kept);
  int64_t d = x.cols;
  checkView(kernel, "x", x, batch * tokens, d);
  checkView(kernel, "out", out, batch * kept, d);
  if (overlaps(x, out))
    fail(kernel, ": out overlaps x");
  parallelFor(batch * kept, rowGrain(d), [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row)
      copyRow(x.row((row / kept) * tokens + keep[row]), out.row(row), d);
  });
}

void unmaskTokens(ConstMat x, const int32_t *keep, int64_t batch, int64_t tokens, int64_t kept,
                  Mat out) {
  const char *kernel = "unmaskTokens";
  std::vector<int32_t> slot = invertKeep(kernel, keep, batch, tokens, kept);
  int64_t d = x.cols;
  checkView(kernel, "x", x, batch * kept, d);
  checkView(kernel, "out", out, batch * tokens, d);
  if (overlaps(x, out))
    fail(kernel, ": out overlaps x");
  parallelFor(batch * tokens, rowGrain(d), [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      int32_t j = slot[row];
      float *o = out.row(row);
      if (j < 0)
        std::fill(o, o + d, 0.0f);
      else
        copyRow(x.row((row / tokens) * kept + j), o, d);
    }
  });
}

void tokenMean(ConstMat x, int64_t batch, int64_t tokens, Mat out) {
  const char *kernel = "tokenMean";
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "tokens", tokens);
  int64_t d = x.cols;
  checkView(kernel, "x", x, batch * tokens, d);
  checkView(kernel, "out", out, batch, d);
  if (overlaps(x, out))
    fail(kernel, ": out overlaps x");
  // Tasks are (sample, block of columns) so that a small batch still spreads
  // over the threads; each sums its columns down the tokens.
  constexpr int64_t kCols = 256;
  int64_t blocks = (d + kCols - 1) / kCols;
  float inv = 1.0f / static_cast<float>(tokens);
  parallelFor(batch * blocks, std::max<int64_t>(1, kElementGrain / (tokens * kCols)),
              [&](int64_t t0, int64_t t1) {
                for (int64_t task = t0; task < t1; ++task) {
                  int64_t b = task / blocks, j0 = (task % blocks) * kCols;
                  int64_t len = std::min(kCols, d - j0);
                  float acc[kCols] = {};
                  for (int64_t t = 0; t < tokens; ++t) {
                    const float *xr = x.row(b * tokens + t) + j0;
                    for (int64_t j = 0; j < len; ++j)
                      acc[j] += xr[j];
                  }
                  float *o = out.row(b) + j0;
                  for (int64_t j = 0; j < len; ++j)
                    o[j] = acc[j] * inv;
                }
              });
}

} // namespace diffrt::cpu
