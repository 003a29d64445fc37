//===- LossTest.cpp - GPU training losses vs the CPU reference ------------===//
//
// ddpmLoss, rfLoss and edmLoss of Losses.cu against diffrt::cpu's on the
// same rounded random inputs, in f32, bf16 and f16: the per-sample loss
// values (f32) and the gradient with respect to the network output, with a
// scalar weight and the optional device loss scale (the CPU reference takes
// per-sample weights: it gets weight · lossScale for every sample). DDPM
// covers timesteps 0 (the decoder NLL, with targets beyond ±0.999 in the
// open edge bins), 1 and the last step, and a shorter schedule; EDM runs
// with and without the kept-patch mask.
//
// Tolerances: both sides compute in double from the same inputs, so the f32
// loss values agree to float rounding whatever the element type (2e-6
// relative allows for the different summation orders and the GPU's own
// transcendental functions); the gradients are rounded to the element type
// at the end and take tolFor().
//
//===----------------------------------------------------------------------===//

#include "GpuTestUtil.h"

#include "diffrt/CpuGradKernels.h"
#include "diffrt/CudaGradKernels.h"

namespace diffrt::cuda::testing {
namespace {

constexpr Tol kLossTol = {2e-6, 2e-6};

DeviceBuffer uploadF32(const std::vector<float> &v) {
  DeviceBuffer b(v.size() * sizeof(float));
  cudaOk(cudaMemcpy(b.get(), v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice), "upload");
  return b;
}
DeviceBuffer uploadI32(const std::vector<int32_t> &v) {
  DeviceBuffer b(v.size() * sizeof(int32_t));
  cudaOk(cudaMemcpy(b.get(), v.data(), v.size() * sizeof(int32_t), cudaMemcpyHostToDevice),
         "upload");
  return b;
}
std::vector<float> downloadF32(const void *p, size_t n) {
  std::vector<float> v(n);
  cudaOk(cudaMemcpy(v.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost), "download");
  return v;
}
std::vector<float> nanVec(int64_t n) { return std::vector<float>(static_cast<size_t>(n), kNaN); }

/// The loss scale for one run: null (1) or a device f32.
struct LossScale {
  float value;
  bool onDevice;
};

TEST(GpuLossDdpm, MatchesCpu) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes())
    for (int64_t steps : {int64_t{1000}, int64_t{50}})
      for (LossScale ls : {LossScale{1.0f, false}, LossScale{1024.0f, true}}) {
        SCOPED_TRACE(::testing::Message() << dtypeName(t) << " steps " << steps << " lossScale "
                                          << ls.value << (ls.onDevice ? " (device)" : " (null)"));
        const int64_t n = 6, c = 3, hw = 7 * 5, count = c * hw;
        std::vector<int32_t> ts = {0, 1, static_cast<int32_t>(steps - 1), 0,
                                   static_cast<int32_t>(rng.integer(2, steps - 2)),
                                   static_cast<int32_t>(rng.integer(0, steps - 1))};
        std::vector<float> pred(static_cast<size_t>(n * 2 * count));
        for (int64_t s = 0; s < n; ++s) {
          std::vector<float> e = rng.normal(count, 1.0, 0.0, t), v = rng.uniform(count, -1, 1, t);
          std::copy(e.begin(), e.end(), pred.begin() + s * 2 * count);
          std::copy(v.begin(), v.end(), pred.begin() + s * 2 * count + count);
        }
        std::vector<float> x0 = rng.uniform(n * count, -1.0, 1.0, t);
        // Targets in the open edge bins of the decoder likelihood.
        for (int64_t i = 0; i < n * count; i += 7)
          x0[static_cast<size_t>(i)] = (i / 7) % 2 ? 1.0f : -1.0f;
        std::vector<float> xt = rng.normal(n * count, 1.0, 0.0, t);
        std::vector<float> noise = rng.normal(n * count, 1.0, 0.0, t);
        const float weight = 1.0f / 6.0f;
        std::vector<float> w(static_cast<size_t>(n), weight * ls.value);
        std::vector<float> rLoss(static_cast<size_t>(n)), rGrad(pred.size());
        cpu::ddpmLoss(pred.data(), x0.data(), xt.data(), noise.data(), ts.data(), n, c, hw, steps,
                      rLoss.data(), w.data(), rGrad.data());

        DeviceBuffer gp = upload(t, pred), gx0 = upload(t, x0), gxt = upload(t, xt),
                     gn = upload(t, noise);
        DeviceBuffer gts = uploadI32(ts), gls = uploadF32({ls.value});
        DeviceBuffer oLoss = uploadF32(nanVec(n)), oGrad = upload(t, nanVec(2 * n * count));
        const float *scale = ls.onDevice ? gls.as<float>() : nullptr;
        ddpmLoss(nullptr, t, gp.get(), gx0.get(), gxt.get(), gn.get(), gts.as<int32_t>(), n, c, hw,
                 steps, oLoss.as<float>(), weight, scale, oGrad.get());
        syncDevice();
        expectClose(rowOf(downloadF32(oLoss.get(), n)), rowOf(rLoss), DType::F32, kLossTol);
        expectClose(rowOf(download(t, oGrad.get(), pred.size())), rowOf(rGrad), t);

        // Values only.
        DeviceBuffer oLoss2 = uploadF32(nanVec(n));
        ddpmLoss(nullptr, t, gp.get(), gx0.get(), gxt.get(), gn.get(), gts.as<int32_t>(), n, c, hw,
                 steps, oLoss2.as<float>(), weight, scale, nullptr);
        syncDevice();
        expectClose(rowOf(downloadF32(oLoss2.get(), n)), rowOf(rLoss), DType::F32, kLossTol);
      }
}

TEST(GpuLossRf, MatchesCpu) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes())
    for (int64_t cPred : {int64_t{4}, int64_t{8}})
      for (LossScale ls : {LossScale{1.0f, false}, LossScale{0.5f, true}}) {
        SCOPED_TRACE(::testing::Message() << dtypeName(t) << " cPrediction " << cPred
                                          << " lossScale " << ls.value);
        const int64_t n = 5, c = 4, hw = 33;
        std::vector<float> pred = rng.normal(n * cPred * hw, 1.0, 0.0, t);
        std::vector<float> x0 = rng.normal(n * c * hw, 1.0, 0.0, t);
        std::vector<float> noise = rng.normal(n * c * hw, 1.0, 0.0, t);
        const float weight = 0.37f;
        std::vector<float> w(static_cast<size_t>(n), weight * ls.value);
        std::vector<float> rLoss(static_cast<size_t>(n)), rGrad(pred.size());
        cpu::rfLoss(pred.data(), x0.data(), noise.data(), n, c, cPred, hw, rLoss.data(), w.data(),
                    rGrad.data());
        DeviceBuffer gp = upload(t, pred), gx0 = upload(t, x0), gn = upload(t, noise);
        DeviceBuffer gls = uploadF32({ls.value});
        DeviceBuffer oLoss = uploadF32(nanVec(n)), oGrad = upload(t, nanVec(n * cPred * hw));
        rfLoss(nullptr, t, gp.get(), gx0.get(), gn.get(), n, c, cPred, hw, oLoss.as<float>(),
               weight, ls.onDevice ? gls.as<float>() : nullptr, oGrad.get());
        syncDevice();
        expectClose(rowOf(downloadF32(oLoss.get(), n)), rowOf(rLoss), DType::F32, kLossTol);
        expectClose(rowOf(download(t, oGrad.get(), pred.size())), rowOf(rGrad), t);
      }
}

TEST(GpuLossEdm, MatchesCpu) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes())
    for (bool masked : {false, true}) {
      SCOPED_TRACE(::testing::Message() << dtypeName(t) << " masked " << masked);
      const int64_t n = 3, c = 4, h = 8, w = 12, patch = 2, count = c * h * w;
      const int64_t patches = (h / patch) * (w / patch), kept = 10;
      std::vector<float> raw = rng.normal(n * count, 1.0, 0.0, t);
      std::vector<float> xn = rng.normal(n * count, 2.0, 0.0, t);
      std::vector<float> x0 = rng.normal(n * count, 0.5, 0.0, t);
      std::vector<float> sigma = rng.uniform(n, 0.05, 5.0);
      std::vector<int32_t> keep;
      for (int64_t s = 0; s < n; ++s) {
        std::vector<int32_t> perm(static_cast<size_t>(patches));
        for (int64_t i = 0; i < patches; ++i)
          perm[static_cast<size_t>(i)] = static_cast<int32_t>(i);
        std::shuffle(perm.begin(), perm.end(), rng.gen());
        keep.insert(keep.end(), perm.begin(), perm.begin() + kept);
      }
      const double sigmaData = 0.5;
      const float weight = 0.25f, scale = 64.0f;
      std::vector<float> wv(static_cast<size_t>(n), weight * scale);
      std::vector<float> rLoss(static_cast<size_t>(n)), rGrad(raw.size());
      cpu::edmLoss(raw.data(), xn.data(), x0.data(), sigma.data(), masked ? keep.data() : nullptr,
                   kept, n, c, h, w, patch, sigmaData, rLoss.data(), wv.data(), rGrad.data());
      DeviceBuffer gr = upload(t, raw), gxn = upload(t, xn), gx0 = upload(t, x0);
      DeviceBuffer gs = uploadF32(sigma), gk = uploadI32(keep), gls = uploadF32({scale});
      DeviceBuffer oLoss = uploadF32(nanVec(n)), oGrad = upload(t, nanVec(n * count));
      edmLoss(nullptr, t, gr.get(), gxn.get(), gx0.get(), gs.as<float>(),
              masked ? gk.as<int32_t>() : nullptr, kept, n, c, h, w, patch, sigmaData,
              oLoss.as<float>(), weight, gls.as<float>(), oGrad.get());
      syncDevice();
      expectClose(rowOf(downloadF32(oLoss.get(), n)), rowOf(rLoss), DType::F32, kLossTol);
      const std::vector<float> grad = download(t, oGrad.get(), raw.size());
      expectClose(rowOf(grad), rowOf(rGrad), t);
      if (masked) {
        // Pixels outside the kept patches get exactly zero.
        int64_t zeros = 0;
        for (float g : grad)
          zeros += g == 0.0f;
        EXPECT_EQ(zeros, n * c * (patches - kept) * patch * patch);
      }
    }
}

} // namespace
} // namespace diffrt::cuda::testing
