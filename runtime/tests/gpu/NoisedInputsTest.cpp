//===- NoisedInputsTest.cpp - a training step's noise drawn on the GPU ----===//
//
// The CUDA backend's writeNoisedInputs (noise and mixes on the device)
// against the host implementation every backend inherits (Philox's
// fillNormal, the mixes in float64), on one plan whose places cover f32,
// bf16 and f16 values and a view with padded rows, for DiT-XL/2's batch
// (32 x 4 x 32 x 32) and an odd element count (the last normal from a
// block of its own). The values must be the same bits except where CUDA's
// and the host's double log, sin or cos differ in the last bit and that
// moves the rounding to float: about once in 10^8 values, so at most a few
// in a million are allowed, each within about one ulp of the place's type.
//
//===----------------------------------------------------------------------===//

#include "GpuTestUtil.h"

#include "diffrt/Rng.h"
#include "diffrt/Session.h"

#include <cmath>
#include <cstring>

namespace diffrt::cuda::testing {
namespace {

struct Layout {
  DType dtype;
  int64_t padding; // extra elements per row of 32
};

/// A plan holding two copies (device-written, host-written) of each place.
Plan placesPlan(int64_t count, const std::vector<Layout> &layouts, std::vector<ValueDesc> &device,
                std::vector<ValueDesc> &host) {
  Plan plan;
  plan.target = "cuda";
  uint64_t offset = 0;
  for (int copy = 0; copy < 2; ++copy)
    for (const Layout &l : layouts) {
      ValueDesc v;
      v.dtype = l.dtype;
      const int64_t cols = count % 32 == 0 ? 32 : count;
      v.shape = {count / cols, cols};
      v.ld = cols + l.padding;
      v.region = Region::Arena;
      v.offset = offset;
      offset += (v.extentBytes() + 255) / 256 * 256;
      (copy == 0 ? device : host).push_back(v);
      plan.values.push_back(v);
    }
  plan.arenaBytes = offset;
  return plan;
}

std::vector<float> readPlace(Backend &backend, const ValueDesc &v) {
  std::vector<uint8_t> bytes(v.extentBytes());
  backend.download(v.region, v.offset, bytes.data(), bytes.size());
  const size_t esize = dtypeSize(v.dtype);
  std::vector<uint8_t> packed;
  for (int64_t r = 0; r < v.rows(); ++r)
    packed.insert(packed.end(), bytes.begin() + r * v.ld * esize, bytes.begin() + (r * v.ld + v.cols()) * esize);
  return decode(v.dtype, packed);
}

void checkNoisedInputs(int64_t samples, int64_t perSample, uint64_t seed, uint64_t stream) {
  SCOPED_TRACE(std::to_string(samples) + " x " + std::to_string(perSample));
  const int64_t count = samples * perSample;
  // x_start, noise and two mixes, one with c != 1, in every element type.
  const std::vector<Layout> layouts = {{DType::F32, 0}, {DType::F32, 0}, {DType::F32, 3}, {DType::BF16, 0},
                                       {DType::BF16, 0}, {DType::F16, 5}, {DType::F16, 0}, {DType::BF16, 0}};
  std::vector<ValueDesc> device, host;
  Plan plan = placesPlan(count, layouts, device, host);
  std::unique_ptr<Backend> backend = createCudaBackend(plan, 0);

  std::vector<float> x0(static_cast<size_t>(count));
  Philox data(seed ^ 0x9e3779b9u);
  data.fillNormal(x0.data(), count);
  NoisedInputs in;
  in.x0 = x0.data();
  in.samples = samples;
  in.perSample = perSample;
  in.seed = seed;
  in.stream = stream;
  using Kind = NoisedInputs::Kind;
  NoisedInputs::Target ddpm{"", Kind::Mix, {}, {}, std::vector<double>(samples, 1.0)};
  NoisedInputs::Target edm{"", Kind::Mix, std::vector<double>(samples, 1.0), {}, {}};
  for (int64_t s = 0; s < samples; ++s) {
    const double a = 0.02 + 0.96 * data.uniform(), sigma = std::exp(-0.6 + 1.2 * data.normal64());
    ddpm.a.push_back(std::sqrt(a));
    ddpm.b.push_back(std::sqrt(1 - a));
    edm.b.push_back(sigma);
    edm.c.push_back(1 / std::sqrt(sigma * sigma + 0.81));
  }
  const NoisedInputs::Target data0{"", Kind::Data, {}, {}, {}}, noise{"", Kind::Noise, {}, {}, {}};
  // Two launches of at most four targets, covering each kind in each type.
  const std::vector<std::vector<NoisedInputs::Target>> groups = {{data0, noise, ddpm, edm},
                                                                 {noise, edm, ddpm, data0}};
  for (size_t g = 0; g < groups.size(); ++g) {
    in.targets = groups[g];
    std::vector<ValueDesc> onDevice(device.begin() + 4 * g, device.begin() + 4 * g + 4),
        onHost(host.begin() + 4 * g, host.begin() + 4 * g + 4);
    backend->writeNoisedInputs(in, onDevice);
    backend->Backend::writeNoisedInputs(in, onHost);
  }
  for (size_t p = 0; p < device.size(); ++p) {
    SCOPED_TRACE("place " + std::to_string(p) + " (" + dtypeName(device[p].dtype) + ")");
    const std::vector<float> got = readPlace(*backend, device[p]), expected = readPlace(*backend, host[p]);
    ASSERT_EQ(got.size(), expected.size());
    int64_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << "element " << i;
      if (std::memcmp(&got[i], &expected[i], sizeof(float)) == 0)
        continue;
      ++differ;
      // A last-bit difference of the noise, carried through a mix and
      // the rounding to the place's type: about one ulp of that type.
      const double ulp = device[p].dtype == DType::F32 ? 0x1p-22 : device[p].dtype == DType::F16 ? 0x1p-9 : 0x1p-6;
      EXPECT_LE(std::fabs(got[i] - expected[i]), ulp * std::max(1.0f, std::fabs(expected[i])))
          << "element " << i << ": " << got[i] << " against " << expected[i];
    }
    EXPECT_LE(differ, 1 + count / 200000) << differ << " of " << count << " values differ";
  }
}

TEST(GpuNoisedInputs, DeviceDrawsTheHostsValuesForDiTXLsBatch) {
  DIFFRT_REQUIRE_GPU();
  checkNoisedInputs(32, 4 * 32 * 32, std::random_device{}(), 17);
}

TEST(GpuNoisedInputs, DeviceDrawsTheHostsValuesForAnOddCount) {
  DIFFRT_REQUIRE_GPU();
  checkNoisedInputs(3, 21, std::random_device{}(), (uint64_t{1} << 33) + 5);
}

} // namespace
} // namespace diffrt::cuda::testing
