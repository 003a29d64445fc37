//===- GeneratedKernelsTest.cpp - NVRTC-built pointwise kernels on the GPU ===//
//
// The CUDA source that `diffc compile` writes for kern.pointwise programs
// (codegen/PointwiseCuda.cpp), compiled through NVRTC by GeneratedKernels
// and launched on fresh random inputs, against the CPU backend's evaluation
// of the same program: every opcode, f32/f16/bf16 and mixed operand types,
// broadcast rows, single elements, column slices, the 8-wide and 1-wide
// paths, in place; and the on-disk cache (hit, corrupt entry rebuilt).
//
//===----------------------------------------------------------------------===//

#include "GpuTestUtil.h"

#include "codegen/PointwiseCuda.h"
#include "diffrt/Pointwise.h"
#include "../PointwiseTestSupport.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <unistd.h>

namespace diffrt::cuda::testing {
namespace {

using testsupport::ProgramBuilder;

/// One operand of a test kernel: its host values (rounded to its type) and
/// shape as the plan describes it.
struct Operand {
  DType dtype;
  HostMat host;
  bool single = false;
};

/// A plan holding one kern.pointwise kernel per program, so the source is
/// written exactly as for an artifact.
struct KernelCase {
  std::string label;
  PwProgram program;
  std::vector<Operand> inputs;
  DType outType;
  int64_t rows, cols, outLd;
  size_t offset = 0;
  bool inPlace = false;
};

Plan planOf(const std::vector<KernelCase> &cases) {
  Plan plan;
  plan.target = "cuda";
  EntryDesc entry{"forward", {}, {}, {}};
  for (const KernelCase &c : cases) {
    KernelDesc k{"kern.pointwise", {}, {}, {}};
    for (const Operand &o : c.inputs) {
      ValueDesc v;
      v.dtype = o.dtype;
      v.shape = o.single ? std::vector<int64_t>{1} : std::vector<int64_t>{o.host.rows, o.host.cols};
      v.ld = o.single ? 1 : o.host.ld;
      k.operands.push_back(static_cast<int32_t>(plan.values.size()));
      plan.values.push_back(v);
    }
    ValueDesc out;
    out.dtype = c.outType;
    out.shape = {c.rows, c.cols};
    out.ld = c.outLd;
    k.results.push_back(static_cast<int32_t>(plan.values.size()));
    plan.values.push_back(out);
    k.attrs["program"] = encodePointwise(c.program);
    entry.kernels.push_back(k);
  }
  plan.entries.push_back(entry);
  return plan;
}

void runCase(GeneratedKernels &kernels, const KernelDesc &k, const KernelCase &c) {
  SCOPED_TRACE(c.label);
  std::vector<DevMat> device;
  std::vector<PointwiseOperand> operands;
  std::vector<cpu::ConstMat> hostInputs;
  for (const Operand &o : c.inputs) {
    device.push_back(toDevice(o.host, o.dtype, c.offset));
    hostInputs.push_back(o.host.cmat());
  }
  for (size_t i = 0; i < c.inputs.size(); ++i)
    operands.push_back({device[i].data(), c.inputs[i].dtype, c.inputs[i].host.rows, c.inputs[i].host.ld,
                        c.inputs[i].single});
  HostMat ref(c.rows, c.cols, c.outLd);
  cpu::pointwise(c.program, hostInputs.data(), ref.mat());
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t col = 0; col < c.cols; ++col)
      ref.at(r, col) = roundTo(c.outType, ref.at(r, col));
  DevMat separate;
  if (!c.inPlace)
    separate = toDevice(poisonedMat(c.rows, c.cols, c.outLd), c.outType, c.offset);
  const DevMat &out = c.inPlace ? device[0] : separate;
  kernels.pointwise(nullptr, std::get<std::string>(k.attrs.at("kernel")), operands.data(), operands.size(),
                    {out.data(), c.outType, c.rows, c.outLd, false}, c.rows, c.cols);
  syncDevice();
  // The GPU and the CPU round the same f32 values; libm and CUDA's math
  // functions differ by an ulp or two before the final rounding.
  expectClose(toHost(out), ref, c.outType);
}

std::vector<KernelCase> cases(Rng &rng) {
  std::vector<KernelCase> all;
  for (DType t : floatTypes()) {
    // Every opcode, 8 wide (aligned rows of 1152) and 1 wide (13 columns,
    // one element past a 16-byte boundary).
    for (int64_t code = static_cast<int64_t>(PwOp::Add); code <= static_cast<int64_t>(PwOp::Abs); ++code)
      for (auto [cols, offset] : {std::pair<int64_t, size_t>{1152, 0}, {13, 1}}) {
        auto op = static_cast<PwOp>(code);
        bool positive = op == PwOp::Log || op == PwOp::Sqrt || op == PwOp::Rsqrt;
        KernelCase c;
        c.label = std::string(dtypeName(t)) + " " + pwOpName(op) + " cols " + std::to_string(cols);
        ProgramBuilder pb;
        pb.op(op, pb.input(0), pb.input(1));
        c.program = pb.p;
        // exp stays below f16's largest value (65504) and a quotient's
        // divisor away from 0, so no output overflows.
        HostMat a = randomMat(rng, t, 64, cols, cols, op == PwOp::Exp ? 1.5 : 1.0);
        if (positive)
          for (float &v : a.v)
            v = roundTo(t, std::fabs(v) + 0.05f);
        HostMat b = randomMat(rng, t, 64, cols);
        if (op == PwOp::Div)
          for (float &v : b.v)
            v = roundTo(t, std::copysign(std::fabs(v) + 0.25f, v));
        c.inputs = {{t, a}, {t, b}};
        c.outType = t;
        c.rows = 64;
        c.cols = cols;
        c.outLd = cols;
        c.offset = offset;
        all.push_back(c);
      }
    // silu(x + bias) · s with x a column slice, bias one broadcast row, s a
    // single element, in f32 bias and the model's type elsewhere; then the
    // tanh GELU in place.
    for (bool inPlace : {false, true}) {
      KernelCase c;
      c.label = std::string(dtypeName(t)) + (inPlace ? " gelu_tanh in place" : " silu(x + bias) * s");
      ProgramBuilder pb;
      if (!inPlace) {
        int32_t sum = pb.op(PwOp::Add, pb.input(0), pb.input(1));
        int32_t e = pb.op(PwOp::Exp, pb.op(PwOp::Neg, sum));
        pb.op(PwOp::Mul, pb.op(PwOp::Div, sum, pb.op(PwOp::Add, pb.constant(1.0f), e)), pb.input(2));
        c.inputs = {{t, randomMat(rng, t, 96, 1152, 1152 + 64, 2.0)},
                    {DType::F32, randomMat(rng, DType::F32, 1, 1152)},
                    {t, randomMat(rng, t, 1, 1), true}};
        c.outLd = 1152 + 64;
      } else {
        int32_t x = pb.input(0);
        int32_t x3 = pb.op(PwOp::Mul, pb.op(PwOp::Mul, x, x), x);
        int32_t inner = pb.op(PwOp::Add, x, pb.op(PwOp::Mul, pb.constant(0.044715f), x3));
        int32_t th = pb.op(PwOp::Tanh, pb.op(PwOp::Mul, pb.constant(0.7978845608f), inner));
        pb.op(PwOp::Mul, pb.op(PwOp::Mul, pb.constant(0.5f), x), pb.op(PwOp::Add, pb.constant(1.0f), th));
        c.inputs = {{t, randomMat(rng, t, 96, 1152, 1152, 3.0)}};
        c.outLd = 1152;
        c.inPlace = true;
      }
      c.program = pb.p;
      c.outType = t;
      c.rows = 96;
      c.cols = 1152;
      all.push_back(c);
    }
    // A cast: an f32 table broadcast over leading rows into t.
    KernelCase cast;
    cast.label = std::string("f32 table -> ") + dtypeName(t);
    ProgramBuilder pb;
    pb.input(0);
    cast.program = pb.p;
    cast.inputs = {{DType::F32, randomMat(rng, DType::F32, 16, 72, 72, 3.0)}};
    cast.outType = t;
    cast.rows = 4 * 16;
    cast.cols = 72;
    cast.outLd = 72;
    all.push_back(cast);
  }
  return all;
}

TEST(GpuGeneratedKernels, EveryProgramAgainstTheCpu) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  std::vector<KernelCase> all = cases(rng);
  Plan plan = planOf(all);
  std::string source = diffc::codegen::writeCudaPointwiseKernels(plan);
  ASSERT_FALSE(source.empty());
  GeneratedKernels kernels(source, "test kernels");
  for (size_t i = 0; i < all.size(); ++i)
    runCase(kernels, plan.entries[0].kernels[i], all[i]);
}

TEST(GpuGeneratedKernels, CacheHitsAndRebuildsACorruptEntry) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  CacheDir dir;
  KernelCase c;
  c.label = "cached add";
  ProgramBuilder pb;
  pb.op(PwOp::Add, pb.input(0), pb.input(1));
  c.program = pb.p;
  c.inputs = {{DType::F16, randomMat(rng, DType::F16, 8, 64)}, {DType::F16, randomMat(rng, DType::F16, 1, 64)}};
  c.outType = DType::F16;
  c.rows = 8;
  c.cols = 64;
  c.outLd = 64;
  Plan plan = planOf({c});
  std::string source = diffc::codegen::writeCudaPointwiseKernels(plan);
  std::string file;
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  auto t0 = now();
  {
    GeneratedKernels first(source, "test kernels");
    std::printf("[GeneratedKernels] NVRTC build and load: %.1f ms\n", ms(t0, now()));
    EXPECT_FALSE(first.fromCache());
    file = first.cachePath();
    ASSERT_EQ(file.rfind(dir.path, 0), 0u) << file;
    runCase(first, plan.entries[0].kernels[0], c);
  }
  {
    auto t1 = now();
    GeneratedKernels second(source, "test kernels");
    std::printf("[GeneratedKernels] load from the cache: %.1f ms\n", ms(t1, now()));
    EXPECT_TRUE(second.fromCache());
    runCase(second, plan.entries[0].kernels[0], c);
  }
  {
    // Flip a byte of the cubin: the checksum rejects it and NVRTC rebuilds.
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
  }
  {
    GeneratedKernels third(source, "test kernels");
    EXPECT_FALSE(third.fromCache());
    runCase(third, plan.entries[0].kernels[0], c);
  }
  GeneratedKernels fourth(source, "test kernels");
  EXPECT_TRUE(fourth.fromCache());
}

TEST(GpuGeneratedKernels, CompileErrorsCarryTheLog) {
  DIFFRT_REQUIRE_GPU();
  CacheDir dir;
  try {
    GeneratedKernels broken("extern \"C\" __global__ void k() { undeclared_thing(); }", "broken.dfx");
    ADD_FAILURE() << "compiled broken source";
  } catch (const std::exception &e) {
    std::string m = e.what();
    EXPECT_NE(m.find("broken.dfx: NVRTC could not compile the generated kernels"), std::string::npos) << m;
    EXPECT_NE(m.find("undeclared_thing"), std::string::npos) << m;
  }
}

TEST(GpuGeneratedKernels, UnknownFunctionIsNamed) {
  DIFFRT_REQUIRE_GPU();
  CacheDir dir;
  GeneratedKernels kernels("extern \"C\" __global__ void present() {}", "m.dfx");
  PointwiseOperand out{};
  try {
    kernels.pointwise(nullptr, "absent", nullptr, 0, out, 1, 1);
    ADD_FAILURE() << "launched a missing function";
  } catch (const std::exception &e) {
    EXPECT_NE(std::string(e.what()).find("m.dfx: generated kernel 'absent'"), std::string::npos) << e.what();
  }
}

} // namespace
} // namespace diffrt::cuda::testing
