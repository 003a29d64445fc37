//===- GoldenExport.cpp - exports the golden cases for make_golden.py -----===//
//
// Writes the golden cases' weights, inputs and outputs for golden/make_golden.py.
//
// Usage: diffc-reference-export <directory>. For every case of TestCases.h it creates
// <directory>/<case>/ with data.bin (all tensors back to back, C order, little-endian) and
// manifest.txt, one line per tensor: "<role> <name> <float32|int64> <byte offset> <rank>
// <dims...>", role being weight, input or output (this implementation's result, for diagnosing a
// mismatch). The Python side rebuilds each original model, loads the weights with strict name
// checking, and writes the original code's output as the golden file the tests compare against.
//
//===----------------------------------------------------------------------===//

#include "TestCases.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace {

using diffc::reference::cases::GoldenCase;

class CaseWriter {
public:
  explicit CaseWriter(const std::filesystem::path &dir)
      : data_(dir / "data.bin", std::ios::binary), manifest_(dir / "manifest.txt") {
    if (!data_ || !manifest_)
      throw std::runtime_error("cannot create files in " + dir.string());
  }

  void write(const std::string &role, const std::string &name, const torch::Tensor &tensor) {
    torch::Tensor t = tensor.contiguous();
    const char *dtype = nullptr;
    if (t.scalar_type() == torch::kFloat32)
      dtype = "float32";
    else if (t.scalar_type() == torch::kInt64)
      dtype = "int64";
    else
      throw std::runtime_error(name + ": only float32 and int64 tensors are exported");
    manifest_ << role << ' ' << name << ' ' << dtype << ' ' << offset_ << ' ' << t.dim();
    for (int64_t extent : t.sizes())
      manifest_ << ' ' << extent;
    manifest_ << '\n';
    const auto bytes = static_cast<std::streamsize>(t.numel() * t.element_size());
    data_.write(static_cast<const char *>(t.data_ptr()), bytes);
    offset_ += bytes;
  }

private:
  std::ofstream data_;
  std::ofstream manifest_;
  int64_t offset_ = 0;
};

} // namespace

int main(int argc, char **argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " <output directory>\n";
    return 2;
  }
  try {
    const std::filesystem::path root = argv[1];
    for (const GoldenCase &c : diffc::reference::cases::goldenCases()) {
      const std::filesystem::path dir = root / c.name;
      std::filesystem::create_directories(dir);
      CaseWriter writer(dir);
      for (const auto &[name, tensor] : c.weights)
        writer.write("weight", name, tensor);
      for (const auto &[name, tensor] : c.inputs)
        writer.write("input", name, tensor);
      writer.write("output", "cpp", c.run());
      std::cout << "wrote " << dir.string() << '\n';
    }
  } catch (const std::exception &e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
