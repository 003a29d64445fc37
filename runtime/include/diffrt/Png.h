//===- Png.h - minimal PNG encoder and decoder for sample images -*- C++ -*-===//
//
// Samples and dataset previews are written as 8-bit gray or RGB PNGs, the
// lowest common denominator every viewer and FID tool reads. The encoder
// always uses filter 0 and a single zlib stream; the decoder accepts any
// non-interlaced 8-bit gray or RGB file (all five row filters), which covers
// what this encoder and common tools produce, and rejects the rest with an
// error naming the file and the chunk. Writes are crash-safe: a temporary
// file in the same directory is fsynced and renamed over the destination.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_PNG_H
#define DIFFRT_PNG_H

#include <cstdint>
#include <string>
#include <vector>

namespace diffrt {

/// `pixels` holds height rows of width * channels bytes, channels 1 (gray)
/// or 3 (RGB, interleaved).
void writePng(const std::string &path, int width, int height, int channels,
              const uint8_t *pixels);

struct Image {
  int width = 0, height = 0, channels = 0;
  /// Row-major, interleaved channels, no row padding.
  std::vector<uint8_t> pixels;
};

Image readPng(const std::string &path);

/// Saves n NCHW float images as one PNG grid: min(columns, n) images per
/// row, ceil(n / columns) rows, `padding` black pixels between and around
/// the images, so the PNG is
///   (cols * (w + padding) + padding) x (rows * (h + padding) + padding).
/// Values in [-1, 1] map to round(clamp((x + 1) / 2, 0, 1) * 255); NaN maps
/// to 0 so that a diverged sample still renders (black) instead of aborting
/// the preview.
///
/// c == 1 writes gray, c == 3 RGB. c == 4 is a *latent preview*: a VAE
/// latent has no colour meaning and no fixed range, so channels 0..2 are
/// shown as RGB after min-max normalising them over the whole grid to
/// [-1, 1] (channel 3 is not shown). Any other c is an error.
void writeImageGrid(const std::string &path, const float *images, int64_t n, int64_t c,
                    int64_t h, int64_t w, int64_t columns, int64_t padding = 2);

} // namespace diffrt

#endif // DIFFRT_PNG_H
