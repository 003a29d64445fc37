//===- GradSplitTest.cpp - split backward on the GPU ----------------------===//
//
// splitBackward writes each part's gradient as a column block of the whole
// in one launch: bit-exact data movement, from strided parts into a strided
// whole whose padding must survive, in every float type; and its argument
// errors.
//
//===----------------------------------------------------------------------===//

#include "GpuTestUtil.h"

#include "diffrt/CudaGradKernels.h"

namespace diffrt::cuda::testing {
namespace {

TEST(GradSplitGpu, PartsBecomeColumnBlocks) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes())
    // aligned: 16-byte aligned parts and row pitches (the vector path);
    // otherwise misaligned parts with odd pitches (the element path).
    for (auto [rows, partCols, count, aligned] :
         {std::tuple<int64_t, int64_t, int, bool>{32, 1152, 6, true}, {32, 1152, 3, false}, {70, 64, 2, true},
          {5, 7, 3, false}, {1, 3, 1, false}}) {
      SCOPED_TRACE(::testing::Message() << dtypeName(t) << " rows " << rows << " part cols " << partCols << " parts "
                                        << count << " aligned " << aligned);
      std::vector<HostMat> parts;
      std::vector<DevMat> devParts;
      std::vector<DConstMat> views;
      HostMat ref(rows, partCols * count);
      for (int i = 0; i < count; ++i) {
        parts.push_back(randomMat(rng, t, rows, partCols, partCols + (aligned ? 8 * i : i)));
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < partCols; ++c)
            ref.at(r, i * partCols + c) = parts.back().at(r, c);
      }
      for (int i = 0; i < count; ++i)
        devParts.push_back(toDevice(parts[i], t, aligned ? 0 : 1));
      for (const DevMat &d : devParts)
        views.push_back(d.c());
      DevMat whole = toDevice(poisonedMat(rows, partCols * count, partCols * count + (aligned ? 8 : 3)), t);
      splitBackward(nullptr, t, views.data(), count, whole.m());
      syncDevice();
      expectExact(toHost(whole), ref);
    }
}

TEST(GradSplitGpu, BadArgumentsAreErrors) {
  DIFFRT_REQUIRE_GPU();
  DevMat whole = toDevice(poisonedMat(2, 9), DType::F32), part = toDevice(poisonedMat(2, 4), DType::F32);
  DConstMat views[2] = {part.c(), part.c()};
  try {
    splitBackward(nullptr, DType::F32, views, 2, whole.m());
    ADD_FAILURE() << "9 columns split into 2 parts were accepted";
  } catch (const std::exception &e) {
    EXPECT_NE(std::string(e.what()).find("do not split into 2 parts"), std::string::npos) << e.what();
  }
}

} // namespace
} // namespace diffrt::cuda::testing
