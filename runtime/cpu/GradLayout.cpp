//===- GradLayout.cpp - backward of the token layout and embedding kernels ===//
//
// Vector-Jacobian products of patchEmbed (a convolution with stride = kernel,
// so an im2col product), unpatchify (a permutation: its backward is the
// inverse gather), labelEmbed (a lookup: its backward sums rows by label),
// the depth-wise convolution with its fused output permutation, and
// tokenMean. Input gradients are written in gather form, one output row per
// task, so no two tasks touch the same element; the parameter gradients
// (convolution weights, biases, table rows) are sums over tokens done in
// fixed blocks and added in block order, independent of the thread count.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CpuGradKernels.h"

#include "Internal.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace diffrt::cpu {

using namespace detail;

void patchEmbedBackward(const float *x, int64_t batch, int64_t c, int64_t height, int64_t width,
                        const float *weight, int64_t d, int64_t p, ConstMat dOut, float *dX,
                        float *dWeight, float *dBias) {
  const char *kernel = "patchEmbedBackward";
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "channels", c);
  checkPositive(kernel, "d", d);
  checkPositive(kernel, "patch size", p);
  if (height <= 0 || width <= 0 || height % p != 0 || width % p != 0)
    fail(kernel, ": image ", height, " x ", width, " is not a positive multiple of patch size ", p);
  int64_t hp = height / p, wp = width / p, tokens = hp * wp, patchLen = c * p * p;
  int64_t rows = batch * tokens;
  checkView(kernel, "dOut", dOut, rows, d);
  if (dWeight != nullptr && x == nullptr)
    fail(kernel, ": dWeight is wanted but the image is null");
  if (dX != nullptr && weight == nullptr)
    fail(kernel, ": dX is wanted but the weight is null");

  if (dBias != nullptr)
    groupColumnSums(
        rows, d, rows,
        [&](int64_t r, int64_t j0, int64_t j1, double *acc) {
          const float *g = dOut.row(r);
          for (int64_t j = j0; j < j1; ++j)
            acc[j - j0] += g[j];
        },
        StoreSums{mat(dBias, 1, d)});

  if (dWeight != nullptr) {
    // dWeight (d x c·p·p) = dOutᵀ · patches, patches as the forward's im2col.
    Scratch patches = scratch(rows * patchLen);
    parallelFor(rows, rowGrain(patchLen), [&](int64_t t0, int64_t t1) {
      for (int64_t row = t0; row < t1; ++row) {
        int64_t b = row / tokens, pr = (row % tokens) / wp, pc = row % wp;
        float *dst = patches.get() + row * patchLen;
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t i = 0; i < p; ++i) {
            const float *src = x + ((b * c + ch) * height + pr * p + i) * width + pc * p;
            std::memcpy(dst + (ch * p + i) * p, src, static_cast<size_t>(p) * sizeof(float));
          }
      }
    });
    sgemmTN(d, patchLen, rows, 1.0f, dOut.data, dOut.ld, patches.get(), patchLen, 0.0f, dWeight,
            patchLen, nullptr, 0);
  }

  if (dX != nullptr) {
    // dPatches = dOut · weight, then each pixel takes its (only) patch entry.
    Scratch dPatches = scratch(rows * patchLen);
    sgemmNN(rows, patchLen, d, 1.0f, dOut.data, dOut.ld, weight, patchLen, 0.0f, dPatches.get(),
            patchLen);
    parallelFor(batch * c * height, rowGrain(width), [&](int64_t i0, int64_t i1) {
      for (int64_t idx = i0; idx < i1; ++idx) {
        int64_t y = idx % height, ch = (idx / height) % c, b = idx / (height * c);
        int64_t pr = y / p, i = y % p;
        float *dst = dX + idx * width;
        for (int64_t pc = 0; pc < wp; ++pc) {
          const float *src =
              dPatches.get() + (b * tokens + pr * wp + pc) * patchLen + (ch * p + i) * p;
          std::memcpy(dst + pc * p, src, static_cast<size_t>(p) * sizeof(float));
        }
      }
    });
  }
}

void unpatchifyBackward(const float *dOut, int64_t batch, int64_t h, int64_t w, int64_t p,
                        int64_t c, Mat dX) {
  const char *kernel = "unpatchifyBackward";
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "h", h);
  checkPositive(kernel, "w", w);
  checkPositive(kernel, "patch size", p);
  checkPositive(kernel, "channels", c);
  checkView(kernel, "dX", dX, batch * h * w, p * p * c);
  if (dOut == nullptr)
    fail(kernel, ": null dOut");
  int64_t height = h * p, width = w * p;
  // Token row r·w + col, element (i·p + j)·c + ch came from pixel
  // (ch, r·p + i, col·p + j).
  parallelFor(batch * h * w, rowGrain(p * p * c), [&](int64_t t0, int64_t t1) {
    for (int64_t row = t0; row < t1; ++row) {
      int64_t b = row / (h * w), r = (row % (h * w)) / w, col = row % w;
      float *o = dX.row(row);
      for (int64_t i = 0; i < p; ++i)
        for (int64_t j = 0; j < p; ++j)
          for (int64_t ch = 0; ch < c; ++ch)
            o[(i * p + j) * c + ch] =
                dOut[((b * c + ch) * height + r * p + i) * width + col * p + j];
    }
  });
}

void labelEmbedBackward(const int32_t *labels, int64_t batch, int64_t numClasses, int64_t d,
                        ConstMat dOut, float *dTable) {
  const char *kernel = "labelEmbedBackward";
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "numClasses", numClasses);
  checkPositive(kernel, "d", d);
  checkView(kernel, "dOut", dOut, batch, d);
  if (labels == nullptr || dTable == nullptr)
    fail(kernel, ": null labels or table gradient");
  for (int64_t b = 0; b < batch; ++b)
    if (labels[b] < 0 || labels[b] > numClasses)
      fail(kernel, ": sample ", b, ": label ", labels[b], " is outside [0, ", numClasses, "] (",
           numClasses, " is the null class)");
  // Samples grouped by label (ascending within a label): each table row is
  // then one task summing its samples in sample order.
  int64_t tableRows = numClasses + 1;
  std::vector<int64_t> start(static_cast<size_t>(tableRows) + 1, 0),
      order(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b)
    ++start[labels[b] + 1];
  for (int64_t l = 0; l < tableRows; ++l)
    start[l + 1] += start[l];
  {
    std::vector<int64_t> cursor(start.begin(), start.end() - 1);
    for (int64_t b = 0; b < batch; ++b)
      order[cursor[labels[b]]++] = b;
  }
  parallelFor(tableRows, rowGrain(d), [&](int64_t l0, int64_t l1) {
    for (int64_t l = l0; l < l1; ++l) {
      float *o = dTable + l * d;
      std::fill(o, o + d, 0.0f);
      for (int64_t i = start[l]; i < start[l + 1]; ++i) {
        const float *g = dOut.row(order[i]);
        for (int64_t j = 0; j < d; ++j)
          o[j] += g[j];
      }
    }
  });
}

void depthwiseConvBackward(ConstMat x, int64_t batch, int64_t h, int64_t w, const float *weight,
                           int64_t k, ScanOrder from, ScanOrder to, ConstMat dOut, Mat dX,
                           float *dWeight, float *dBias) {
  const char *kernel = "depthwiseConvBackward";
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "h", h);
  checkPositive(kernel, "w", w);
  checkPositive(kernel, "k", k);
  if (k % 2 == 0)
    fail(kernel, ": kernel size ", k, " is even; 'same' padding k/2 needs an odd size");
  int64_t tokens = h * w, d = x.cols, taps = k * k, pad = k / 2, rows = batch * tokens;
  checkView(kernel, "x", x, rows, d);
  checkView(kernel, "dOut", dOut, rows, d);
  if (dX.data != nullptr) {
    checkView(kernel, "dX", dX, rows, d);
    if (weight == nullptr)
      fail(kernel, ": dX is wanted but the weight is null");
    if (overlaps(dX, x) || overlaps(dX, dOut))
      fail(kernel, ": dX overlaps x or dOut");
  }

  // The forward wrote the result of sequence position s to row perm[s]
  // (scanPosition validates the orders); grads are read from there.
  std::vector<int64_t> perm(static_cast<size_t>(tokens));
  for (int64_t r = 0; r < h; ++r)
    for (int64_t c = 0; c < w; ++c)
      perm[scanPosition(from, h, w, r, c)] = scanPosition(to, h, w, r, c);
  // The forward treats sequence position s as grid cell (s / w, s % w)
  // for the neighbourhood and as cell `from`(s) for the permutation; so
  // does this backward.
  auto gradRow = [&](int64_t b, int64_t s) { return dOut.row(b * tokens + perm[s]); };

  if (dX.data != nullptr) {
    // dX at cell (r, c) = Σ_taps w[tap] · g at the cell that read (r, c)
    // through that tap, i.e. (r − di + pad, c − dj + pad).
    std::vector<float> wt(static_cast<size_t>(taps * d));
    for (int64_t ch = 0; ch < d; ++ch)
      for (int64_t tap = 0; tap < taps; ++tap)
        wt[tap * d + ch] = weight[ch * taps + tap];
    parallelFor(rows, rowGrain(d * taps), [&](int64_t s0, int64_t s1) {
      for (int64_t row = s0; row < s1; ++row) {
        int64_t b = row / tokens, s = row % tokens, r = s / w, c = s % w;
        float *o = dX.row(row);
        std::fill(o, o + d, 0.0f);
        for (int64_t di = 0; di < k; ++di) {
          int64_t rr = r - di + pad;
          if (rr < 0 || rr >= h)
            continue;
          for (int64_t dj = 0; dj < k; ++dj) {
            int64_t cc = c - dj + pad;
            if (cc < 0 || cc >= w)
              continue;
            const float *g = gradRow(b, rr * w + cc), *wk = &wt[(di * k + dj) * d];
            for (int64_t ch = 0; ch < d; ++ch)
              o[ch] += wk[ch] * g[ch];
          }
        }
      }
    });
  }

  if (dWeight == nullptr && dBias == nullptr)
    return;
  // Fixed blocks of rows (at most 64 of them, so the partials stay small),
  // each accumulating tap-major partial sums in double; blocks added in
  // order.
  int64_t blocks = std::min<int64_t>(64, (rows + 7) / 8);
  int64_t blockRows = (rows + blocks - 1) / blocks;
  blocks = (rows + blockRows - 1) / blockRows;
  int64_t partLen = (taps + 1) * d;
  std::vector<double> partial(static_cast<size_t>(blocks * partLen));
  parallelFor(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      double *acc = &partial[blk * partLen];
      std::fill(acc, acc + partLen, 0.0);
      double *accBias = acc + taps * d;
      for (int64_t row = blk * blockRows; row < std::min(rows, (blk + 1) * blockRows); ++row) {
        int64_t b = row / tokens, s = row % tokens, r = s / w, c = s % w;
        const float *g = gradRow(b, s);
        for (int64_t ch = 0; ch < d; ++ch)
          accBias[ch] += g[ch];
        if (dWeight == nullptr)
          continue;
        for (int64_t di = 0; di < k; ++di) {
          int64_t rr = r + di - pad;
          if (rr < 0 || rr >= h)
            continue;
          for (int64_t dj = 0; dj < k; ++dj) {
            int64_t cc = c + dj - pad;
            if (cc < 0 || cc >= w)
              continue;
            const float *xin = x.row(b * tokens + rr * w + cc);
            double *a = acc + (di * k + dj) * d;
            for (int64_t ch = 0; ch < d; ++ch)
              a[ch] += static_cast<double>(g[ch] * xin[ch]);
          }
        }
      }
    }
  });
  parallelFor(d, std::max<int64_t>(1, kElementGrain / (blocks * (taps + 1))),
              [&](int64_t c0, int64_t c1) {
                for (int64_t ch = c0; ch < c1; ++ch) {
                  for (int64_t tap = 0; tap <= taps; ++tap) {
                    double total = 0.0;
                    for (int64_t blk = 0; blk < blocks; ++blk)
                      total += partial[blk * partLen + tap * d + ch];
                    if (tap < taps) {
                      if (dWeight != nullptr)
                        dWeight[ch * taps + tap] = static_cast<float>(total);
                    } else if (dBias != nullptr) {
                      dBias[ch] = static_cast<float>(total);
                    }
                  }
                }
              });
}

void tokenMeanBackward(ConstMat dOut, int64_t batch, int64_t tokens, Mat dX) {
  const char *kernel = "tokenMeanBackward";
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "tokens", tokens);
  int64_t d = dOut.cols;
  checkView(kernel, "dOut", dOut, batch, d);
  checkView(kernel, "dX", dX, batch * tokens, d);
  if (overlaps(dX, dOut))
    fail(kernel, ": dX overlaps dOut");
  // The forward multiplies the float sum by 1/tokens; so does this.
  float inv = 1.0f / static_cast<float>(tokens);
  parallelFor(batch * tokens, rowGrain(d), [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const float *g = dOut.row(row / tokens);
      float *o = dX.row(row);
      for (int64_t j = 0; j < d; ++j)
        o[j] = g[j] * inv;
    }
  });
}

} // namespace diffrt::cpu
