//===- Datasets.h - training data the runtime can load ----------*- C++ -*-===//
//
// Two kinds of training data: small pixel-space image sets in the IDX format
// of MNIST and Fashion-MNIST (raw or gzip-compressed), for tests and
// pixel-space models; and precomputed VAE latents with class labels stored
// as safetensors, for latent-space models whose encoder does not run in the
// trainer. Loaders validate the files completely and fail with errors that
// name the file and the numbers involved.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_DATASETS_H
#define DIFFRT_DATASETS_H

#include <cstdint>
#include <string>
#include <vector>

namespace diffrt {

/// Gray 8-bit images, count x height x width row-major, one label each.
struct ImageDataset {
  int64_t count = 0, height = 0, width = 0;
  std::vector<uint8_t> pixels;
  std::vector<int32_t> labels;
  /// max label + 1 (0 for an empty set).
  int64_t numClasses = 0;
};

/// Reads an IDX image file (magic 0x00000803: count, rows, cols) and an IDX
/// label file (magic 0x00000801: count), each raw or gzip-compressed
/// (detected from the content, not the name).
ImageDataset loadIdx(const std::string &imagesPath, const std::string &labelsPath);

/// Fashion-MNIST as the Debian package dataset-fashion-mnist installs it:
/// <dir>/<split>-images-idx3-ubyte.gz and <dir>/<split>-labels-idx1-ubyte.gz
/// with split "train" (60000 images) or "t10k" (10000).
ImageDataset loadFashionMnist(const std::string &dir = "/usr/share/datasets/fashion-mnist",
                              const std::string &split = "train");

/// Images [begin, begin + count) as an N x 1 x padTo x padTo float tensor:
/// pixel p maps to p / 127.5 - 1 and the image is centred in a border of -1
/// (the value of black), e.g. 28 -> 32 pads 2 on each side; when the border
/// is odd the extra row/column goes to the bottom/right.
std::vector<float> toModelInput(const ImageDataset &ds, int64_t begin, int64_t count,
                                int64_t padTo);

/// Precomputed latents: count x channels x height x width float32 and one
/// class label per latent.
struct LatentDataset {
  int64_t count = 0, channels = 0, height = 0, width = 0;
  std::vector<float> latents;
  std::vector<int32_t> labels;
};

/// Reads tensors "latents" (rank 4; F32, F16, BF16 or F64) and "labels"
/// (rank 1; I32 or I64, non-negative, fitting in int32) with equal counts.
LatentDataset loadLatents(const std::string &safetensorsPath);

} // namespace diffrt

#endif // DIFFRT_DATASETS_H
