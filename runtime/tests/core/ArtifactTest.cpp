//===- ArtifactTest.cpp - the .dfx format and its validation --------------===//
//
// Round trips, and one test per way an artifact can be wrong: each must give
// an error that names the field and the numbers, never a crash.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Error.h"
#include "diffrt/Plan.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <unistd.h>

using namespace diffrt;

namespace {

ValueDesc value(DType t, std::vector<int64_t> shape, Region r, uint64_t offset) {
  ValueDesc v;
  v.dtype = t;
  v.shape = std::move(shape);
  v.region = r;
  v.offset = offset;
  v.ld = v.shape.empty() ? 1 : v.shape.back();
  return v;
}

/// y = x · wᵀ + b with x 2x4, w 3x4.
Plan linearPlan() {
  Plan p;
  p.target = "cpu";
  p.modelJson = R"({"name":"linear","family":"test"})";
  p.weightsBytes = 512;
  p.arenaBytes = 512;
  p.values = {value(DType::F32, {2, 4}, Region::Arena, 0), value(DType::F32, {3, 4}, Region::Weights, 0),
              value(DType::F32, {3}, Region::Weights, 256), value(DType::F32, {2, 3}, Region::Arena, 256)};
  p.params = {{1, "lin.weight"}, {2, "lin.bias"}};
  KernelDesc k{"kern.gemm", {0, 1, 2, -1, -1}, {3}, {{"act", std::string("none")}}};
  p.entries = {{"forward", {k}, {{"x", 0}}, {3}}};
  return p;
}

std::string errorOf(const std::vector<uint8_t> &bytes) {
  try {
    parseArtifact(bytes, "m.dfx");
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

std::string errorOf(const Plan &p) { return errorOf(serializeArtifact(p)); }

void putU32(std::vector<uint8_t> &b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

} // namespace

TEST(Artifact, RoundTrip) {
  Plan p = linearPlan();
  p.target = "cuda";
  p.deviceCode = {1, 2, 3, 250};
  p.state = {{"pos_embed", -1, {1, 1, 16}, "zeros"}};
  p.entries[0].kernels[0].attrs["grid"] = std::vector<int64_t>{4, 4};
  p.entries[0].kernels[0].attrs["scale"] = 0.125;
  Plan q = parseArtifact(serializeArtifact(p), "m.dfx");
  EXPECT_EQ(q.target, "cuda");
  EXPECT_EQ(q.values.size(), 4u);
  EXPECT_EQ(q.values[2].shape, std::vector<int64_t>{3});
  EXPECT_EQ(q.values[3].offset, 256u);
  EXPECT_EQ(q.params[0].name, "lin.weight");
  EXPECT_EQ(q.state[0].shape, (std::vector<int64_t>{1, 1, 16}));
  EXPECT_EQ(q.deviceCode, p.deviceCode);
  const KernelDesc &k = q.entry("forward")->kernels[0];
  EXPECT_EQ(k.operands, (std::vector<int32_t>{0, 1, 2, -1, -1}));
  EXPECT_EQ(std::get<double>(k.attrs.at("scale")), 0.125);
  EXPECT_EQ(std::get<std::vector<int64_t>>(k.attrs.at("grid")), (std::vector<int64_t>{4, 4}));
}

TEST(Artifact, WriteIsAtomicAndReadable) {
  std::string path = ::testing::TempDir() + "/linear_" + std::to_string(::getpid()) + ".dfx";
  std::string error;
  ASSERT_TRUE(writeArtifact(linearPlan(), path, error)) << error;
  EXPECT_EQ(readArtifact(path).params.size(), 2u);
  std::ifstream tmp(path + ".tmp." + std::to_string(::getpid()));
  EXPECT_FALSE(tmp.good()) << "the temporary file was left behind";
  std::remove(path.c_str());
  EXPECT_FALSE(writeArtifact(linearPlan(), "/nonexistent-dir/x.dfx", error));
  EXPECT_NE(error.find("/nonexistent-dir/x.dfx"), std::string::npos) << error;
}

TEST(Artifact, MissingFileNamesIt) {
  try {
    readArtifact("/nonexistent/model.dfx");
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.dfx: cannot open"), std::string::npos) << e.what();
  }
}

TEST(Artifact, Truncated) {
  std::vector<uint8_t> bytes = serializeArtifact(linearPlan());
  std::vector<uint8_t> header(bytes.begin(), bytes.begin() + 40);
  EXPECT_NE(errorOf(header).find("m.dfx: truncated: 40 bytes, but the header alone needs 64"), std::string::npos)
      << errorOf(header);
  size_t full = bytes.size();
  bytes.resize(full - 10);
  std::string e = errorOf(bytes);
  EXPECT_NE(e.find("the header records " + std::to_string(full) + " bytes but the file has " +
                   std::to_string(full - 10) + " (truncated)"),
            std::string::npos)
      << e;
}

TEST(Artifact, ForeignFile) {
  std::vector<uint8_t> bytes = serializeArtifact(linearPlan());
  bytes[0] = 'X';
  EXPECT_NE(errorOf(bytes).find("not a diffc artifact"), std::string::npos);
}

TEST(Artifact, WrongVersion) {
  std::vector<uint8_t> bytes = serializeArtifact(linearPlan());
  putU32(bytes, 8, 7);
  EXPECT_NE(errorOf(bytes).find("artifact format version 7, but this runtime reads version 4"),
            std::string::npos)
      << errorOf(bytes);
}

TEST(Artifact, EditedByteFailsTheChecksum) {
  std::vector<uint8_t> bytes = serializeArtifact(linearPlan());
  bytes[bytes.size() / 2] ^= 0x20;
  std::string e = errorOf(bytes);
  EXPECT_NE(e.find("checksum mismatch, the file was edited or corrupted (stored 0x"), std::string::npos) << e;
}

TEST(Artifact, ValueOutsideItsRegion) {
  Plan p = linearPlan();
  p.values[3].offset = 500;
  std::string e = errorOf(p);
  EXPECT_NE(e.find("value #3: offset 500 + 24 bytes exceeds the arena region of 512 bytes"), std::string::npos) << e;
}

TEST(Artifact, RowStrideShorterThanRow) {
  Plan p = linearPlan();
  p.values[0].ld = 3;
  EXPECT_NE(errorOf(p).find("value #0: row stride 3 is less than the row length 4"), std::string::npos)
      << errorOf(p);
}

TEST(Artifact, ValueIdOutOfRange) {
  Plan p = linearPlan();
  p.entries[0].kernels[0].operands[1] = 9;
  EXPECT_NE(errorOf(p).find("kernel #0 (kern.gemm) operand: value id 9 is out of range (the plan has 4 values)"),
            std::string::npos)
      << errorOf(p);
}

TEST(Artifact, UnknownKernelListsKnownOnes) {
  Plan p = linearPlan();
  p.entries[0].kernels[0].op = "kern.frobnicate";
  std::string e = errorOf(p);
  EXPECT_NE(e.find("unknown kernel op 'kern.frobnicate'; this runtime executes:"), std::string::npos) << e;
  EXPECT_NE(e.find("kern.gemm"), std::string::npos) << e;
}

TEST(Artifact, KernelShapesMustFit) {
  Plan p = linearPlan();
  p.values[1].shape = {3, 5};
  p.values[1].ld = 5;
  std::string e = errorOf(p);
  EXPECT_NE(e.find("kernel #0 (kern.gemm): weight is 3x5 but the input rows have 4 features"), std::string::npos) << e;
}

TEST(Artifact, KernelAttributeMissing) {
  Plan p = linearPlan();
  p.entries[0].kernels[0].attrs.clear();
  EXPECT_NE(errorOf(p).find("missing attribute 'act'"), std::string::npos) << errorOf(p);
}

/// linearPlan with GELU whose gemm also writes its pre-activation (value 4),
/// then the backward kernel reading it: dOut value 5, dW value 6.
Plan savedPreactivationPlan() {
  Plan p = linearPlan();
  p.arenaBytes = 1024;
  p.values.push_back(value(DType::F32, {2, 3}, Region::Arena, 512));
  p.values.push_back(value(DType::F32, {2, 3}, Region::Arena, 768));
  p.values.push_back(value(DType::F32, {3, 4}, Region::Arena, 0));
  KernelDesc &k = p.entries[0].kernels[0];
  k.attrs["act"] = std::string("gelu");
  k.results = {3, 4};
  KernelDesc grad{"vjp:kern.gemm", {0, 1, 2, -1, -1, 4, 5}, {-1, 6, -1, -1, -1}, k.attrs};
  grad.attrs["saved"] = int64_t{1};
  p.entries[0].kernels.push_back(grad);
  return p;
}

TEST(Artifact, SavedPreactivationIsChecked) {
  EXPECT_EQ(errorOf(savedPreactivationPlan()), "");
  Plan p = savedPreactivationPlan();
  p.values[4].shape = {2, 4};
  p.values[4].ld = 4;
  EXPECT_NE(errorOf(p).find("kernel #0 (kern.gemm): preactivation must be 2x3, got 2x4"), std::string::npos)
      << errorOf(p);
  p = savedPreactivationPlan();
  p.entries[0].kernels[0].attrs["act"] = std::string("none");
  EXPECT_NE(errorOf(p).find("a preactivation without an activation or a gated residual is the result itself"),
            std::string::npos)
      << errorOf(p);
  p = savedPreactivationPlan();
  p.entries[0].kernels[1].attrs["saved"] = int64_t{2};
  EXPECT_NE(errorOf(p).find("kernel #1 (vjp:kern.gemm): kern.gemm saves one value, got 2"), std::string::npos)
      << errorOf(p);
  p.entries[0].kernels[1].attrs["saved"] = int64_t{3};
  EXPECT_NE(errorOf(p).find("5 gradient slots and 3 saved values but 7 operands"), std::string::npos) << errorOf(p);
  p = savedPreactivationPlan();
  p.entries[0].kernels[1].operands[5] = -1;
  EXPECT_NE(errorOf(p).find("saved value #0 is absent"), std::string::npos) << errorOf(p);
  p = savedPreactivationPlan();
  p.entries[0].kernels[1].attrs["saved"] = std::string("one");
  EXPECT_NE(errorOf(p).find("attribute 'saved' must be an integer"), std::string::npos) << errorOf(p);
}

/// kern.attention (q, k, v 2x4x8, two heads) writing its output (value 3)
/// and log-sum-exp (value 4), then its backward reading both as saved
/// values: dOut value 5, dQ, dK, dV values 6-8.
Plan savedAttentionPlan() {
  Plan p;
  p.target = "cuda";
  p.modelJson = R"({"name":"attention","family":"test"})";
  p.arenaBytes = 2304;
  for (uint64_t i = 0; i < 4; ++i)
    p.values.push_back(value(DType::F32, {2, 4, 8}, Region::Arena, 256 * i));
  p.values.push_back(value(DType::F32, {2, 2, 4}, Region::Arena, 1024));
  for (uint64_t i = 0; i < 4; ++i)
    p.values.push_back(value(DType::F32, {2, 4, 8}, Region::Arena, 1280 + 256 * i));
  std::map<std::string, AttrValue> attrs{{"num_heads", int64_t{2}}, {"scale", 0.5}};
  KernelDesc forward{"kern.attention", {0, 1, 2}, {3, 4}, attrs};
  KernelDesc grad{"vjp:kern.attention", {0, 1, 2, 3, 4, 5}, {6, 7, 8}, attrs};
  grad.attrs["saved"] = int64_t{2};
  p.entries = {{"forward", {forward, grad}, {{"q", 0}, {"k", 1}, {"v", 2}, {"d", 5}}, {6, 7, 8}}};
  return p;
}

TEST(Artifact, SavedAttentionStatisticsAreChecked) {
  EXPECT_EQ(errorOf(savedAttentionPlan()), "");
  Plan p = savedAttentionPlan();
  p.values[4].shape = {2, 4, 2};
  p.values[4].ld = 2;
  EXPECT_NE(errorOf(p).find("kernel #0 (kern.attention): logsumexp must be 2x2x4, got 2x4x2"), std::string::npos)
      << errorOf(p);
  p = savedAttentionPlan();
  p.values[4].dtype = DType::F16;
  EXPECT_NE(errorOf(p).find("logsumexp must be F32, got F16"), std::string::npos) << errorOf(p);
  p = savedAttentionPlan();
  p.entries[0].kernels[1].attrs["saved"] = int64_t{1};
  EXPECT_NE(errorOf(p).find("kernel #1 (vjp:kern.attention): kern.attention saves its result and "
                            "log-sum-exp (2 values), got 1"),
            std::string::npos)
      << errorOf(p);
  p = savedAttentionPlan();
  p.entries[0].kernels[1].operands[3] = 4;
  EXPECT_NE(errorOf(p).find("the saved attention output is 2x2x4 F32 but its incoming gradient is 2x4x8 F32"),
            std::string::npos)
      << errorOf(p);
}

/// savedAttentionPlan's backward with its gradients' row sums
/// (kern-fold-attention-bias-grad): values 9, 10, 11 of 8 values each,
/// the parts of one bias gradient.
Plan columnSumsPlan() {
  Plan p = savedAttentionPlan();
  p.arenaBytes = 2560;
  for (uint64_t i = 0; i < 3; ++i)
    p.values.push_back(value(DType::F32, {8}, Region::Arena, 2304 + 32 * i));
  KernelDesc &grad = p.entries[0].kernels[1];
  grad.attrs["column_sums"] = int64_t{1};
  grad.results.insert(grad.results.end(), {9, 10, 11});
  return p;
}

TEST(Artifact, AttentionColumnSumsAreChecked) {
  EXPECT_EQ(errorOf(columnSumsPlan()), "");
  Plan p = columnSumsPlan();
  p.values[10].shape = {4};
  EXPECT_NE(errorOf(p).find("kernel #1 (vjp:kern.attention): the row sums of gradient #1 are 4 F32 but must be "
                            "8 F32"),
            std::string::npos)
      << errorOf(p);
  p = columnSumsPlan();
  p.entries[0].kernels[1].results[0] = -1;
  EXPECT_NE(errorOf(p).find("row sums of gradient #0, which is not wanted"), std::string::npos) << errorOf(p);
  p = columnSumsPlan();
  p.entries[0].kernels[1].results.pop_back();
  EXPECT_NE(errorOf(p).find("column_sums needs a sum result per gradient slot, got 5 results"), std::string::npos)
      << errorOf(p);
  p = columnSumsPlan();
  p.entries[0].kernels[1].attrs["column_sums"] = std::string("yes");
  EXPECT_NE(errorOf(p).find("attribute 'column_sums' must be the integer 1"), std::string::npos) << errorOf(p);
  // Without the attribute the sums count as slots the forward does not have.
  p = columnSumsPlan();
  p.entries[0].kernels[1].attrs.erase("column_sums");
  EXPECT_NE(errorOf(p).find("kernel #1 (vjp:kern.attention): 6 gradient slots and 2 saved values but 6 operands"),
            std::string::npos)
      << errorOf(p);
  Plan gemm = linearPlan();
  KernelDesc grad{"vjp:kern.gemm", {0, 1, 2, -1, -1, 3}, {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
                  gemm.entries[0].kernels[0].attrs};
  grad.attrs["column_sums"] = int64_t{1};
  gemm.entries[0].kernels.push_back(grad);
  EXPECT_NE(errorOf(gemm).find("only an attention backward sums its gradients (column_sums)"), std::string::npos)
      << errorOf(gemm);
}

/// linearPlan's backward with the input's activation folded in
/// (kern-fold-activation-grad): dOut value 4, z of the input value 5 (after
/// the incoming gradient), dz value 6.
Plan foldedActivationPlan() {
  Plan p = linearPlan();
  p.arenaBytes = 1024;
  p.values.push_back(value(DType::F32, {2, 3}, Region::Arena, 512));
  p.values.push_back(value(DType::F32, {2, 4}, Region::Arena, 640));
  p.values.push_back(value(DType::F32, {2, 4}, Region::Arena, 768));
  KernelDesc grad{"vjp:kern.gemm", {0, 1, 2, -1, -1, 4, 5}, {6, -1, -1, -1, -1}, p.entries[0].kernels[0].attrs};
  grad.attrs["input_grad_act"] = std::string("gelu_tanh");
  p.entries[0].kernels.push_back(grad);
  return p;
}

TEST(Artifact, FoldedInputActivationIsChecked) {
  EXPECT_EQ(errorOf(foldedActivationPlan()), "");
  Plan p = foldedActivationPlan();
  p.values[5].shape = {2, 3};
  p.values[5].ld = 3;
  EXPECT_NE(errorOf(p).find("kernel #1 (vjp:kern.gemm): the input's pre-activation must be a whole tensor "
                            "shaped and typed as the input"),
            std::string::npos)
      << errorOf(p);
  p = foldedActivationPlan();
  p.entries[0].kernels[1].attrs["input_grad_act"] = std::string("relu");
  EXPECT_NE(errorOf(p).find("attribute 'input_grad_act' must be gelu, gelu_tanh or silu"), std::string::npos)
      << errorOf(p);
  p = foldedActivationPlan();
  p.entries[0].kernels[1].operands.pop_back();
  EXPECT_NE(errorOf(p).find("input_grad_act needs the input's pre-activation after the incoming gradient"),
            std::string::npos)
      << errorOf(p);
}

/// y = layernorm(x), x 2x4, and its backward with an addend (kern.vjp
/// input_grad_addend): dx (value 6) = the input gradient + value 5, given
/// the incoming gradient value 4.
Plan summedNormGradPlan() {
  Plan p;
  p.target = "cpu";
  p.modelJson = R"({"name":"norm","family":"test"})";
  p.arenaBytes = 1024;
  p.values = {value(DType::F32, {2, 4}, Region::Arena, 0), {}, {}, value(DType::F32, {2, 4}, Region::Arena, 128)};
  p.values.push_back(value(DType::F32, {2, 4}, Region::Arena, 256));
  p.values.push_back(value(DType::F32, {2, 4}, Region::Arena, 384));
  p.values.push_back(value(DType::F32, {2, 4}, Region::Arena, 512));
  p.values[1] = value(DType::F32, {4}, Region::Arena, 640);
  p.values[2] = value(DType::F32, {4}, Region::Arena, 768);
  KernelDesc k{"kern.norm", {0, -1, -1, -1, -1, -1, -1, -1}, {3},
               {{"kind", std::string("layer")}, {"group_size", int64_t(4)}, {"epsilon", 1e-6}}};
  KernelDesc grad{"vjp:kern.norm", {0, -1, -1, -1, -1, -1, -1, -1, 4, 5}, {6, -1, -1, -1, -1, -1, -1, -1}, k.attrs};
  grad.attrs["input_grad_addend"] = int64_t(1);
  p.entries = {{"train_step", {k, grad}, {{"x", 0}, {"dy", 4}, {"r", 5}}, {3, 6}}};
  return p;
}

TEST(Artifact, NormGradAddendIsChecked) {
  EXPECT_EQ(errorOf(summedNormGradPlan()), "");
  Plan p = summedNormGradPlan();
  p.values[5].shape = {2, 2};
  p.values[5].ld = 2;
  EXPECT_NE(errorOf(p).find("kernel #1 (vjp:kern.norm): the addend must be a whole tensor shaped and typed as "
                            "the input, whose gradient is wanted"),
            std::string::npos)
      << errorOf(p);
  p = summedNormGradPlan();
  p.entries[0].kernels[1].results[0] = -1;
  EXPECT_NE(errorOf(p).find("the addend must be a whole tensor"), std::string::npos) << errorOf(p);
  p = summedNormGradPlan();
  p.entries[0].kernels[1].attrs["input_grad_addend"] = std::string("yes");
  EXPECT_NE(errorOf(p).find("attribute 'input_grad_addend' must be the integer 1"), std::string::npos)
      << errorOf(p);
  p = summedNormGradPlan();
  p.entries[0].kernels[1].operands.pop_back();
  EXPECT_NE(errorOf(p).find("input_grad_addend needs the addend after the incoming gradient"), std::string::npos)
      << errorOf(p);
  p = summedNormGradPlan();
  p.entries[0].kernels[1].op = "vjp:kern.gemm";
  EXPECT_NE(errorOf(p).find("only a kern.norm backward adds to its input gradient"), std::string::npos)
      << errorOf(p);
}

/// kern.norm's residual form: sum = r + g ⊙ y, out = norm(sum); y, r, out
/// and sum 1x2x4, g 1x4.
Plan residualNormPlan() {
  Plan p;
  p.target = "cpu";
  p.modelJson = R"({"name":"norm","family":"test"})";
  p.arenaBytes = 1024;
  p.values = {value(DType::F32, {1, 2, 4}, Region::Arena, 0), value(DType::F32, {1, 2, 4}, Region::Arena, 128),
              value(DType::F32, {1, 4}, Region::Arena, 256), value(DType::F32, {1, 2, 4}, Region::Arena, 384),
              value(DType::F32, {1, 2, 4}, Region::Arena, 512)};
  KernelDesc k{"kern.norm", {0, -1, -1, -1, -1, -1, 1, 2}, {3, 4},
               {{"kind", std::string("layer")}, {"group_size", int64_t(4)}, {"epsilon", 1e-6}}};
  p.entries = {{"forward", {k}, {{"y", 0}, {"r", 1}, {"g", 2}}, {3, 4}}};
  return p;
}

TEST(Artifact, NormResidualFormIsChecked) {
  EXPECT_EQ(errorOf(residualNormPlan()), "");
  Plan p = residualNormPlan();
  p.entries[0].kernels[0].operands[7] = -1;
  EXPECT_NE(errorOf(p).find("kernel #0 (kern.norm): residual and residual gate must come together"),
            std::string::npos)
      << errorOf(p);
  p = residualNormPlan();
  p.entries[0].kernels[0].results.pop_back();
  EXPECT_NE(errorOf(p).find("expects 8 operands and 2 results, got 8 and 1"), std::string::npos) << errorOf(p);
  p = residualNormPlan();
  p.values[2].shape = {1, 3};
  p.values[2].ld = 3;
  EXPECT_NE(errorOf(p).find("residual gate must be"), std::string::npos) << errorOf(p);
  p = residualNormPlan();
  p.entries[0].kernels[0].operands.resize(6);
  EXPECT_NE(errorOf(p).find("expects 8 operands and 1 results, got 6 and 2"), std::string::npos) << errorOf(p);
}

/// out = x + bias as a generated kernel: x 2x4, bias 4.
Plan pointwisePlan(const std::string &target) {
  Plan p = linearPlan();
  p.target = target;
  p.values[3] = value(DType::F32, {2, 4}, Region::Arena, 256);
  KernelDesc k{"kern.pointwise", {0, 2}, {3}, {}};
  p.values[2].shape = {4};
  p.values[2].ld = 4;
  k.attrs["program"] = std::vector<int64_t>{0, 0, 0, 0, 1, 0, 2, 0, 1};
  k.attrs["kernel"] = std::string("diffc_pointwise_0");
  p.entries[0].kernels = {k};
  if (target == "cuda") {
    std::string source = "extern \"C\" __global__ void __launch_bounds__(256) diffc_pointwise_0(args a) {}";
    p.deviceCode.assign(source.begin(), source.end());
  }
  return p;
}

TEST(Artifact, PointwiseKernelsRoundTrip) {
  for (const char *target : {"cpu", "cuda"}) {
    Plan q = parseArtifact(serializeArtifact(pointwisePlan(target)), "m.dfx");
    EXPECT_EQ(std::get<std::vector<int64_t>>(q.entries[0].kernels[0].attrs.at("program")).size(), 9u) << target;
  }
}

TEST(Artifact, PointwiseProgramIsValidated) {
  Plan p = pointwisePlan("cpu");
  p.entries[0].kernels[0].attrs["program"] = std::vector<int64_t>{0, 0, 0, 0, 3, 0, 2, 0, 1};
  std::string e = errorOf(p);
  EXPECT_NE(e.find("kernel #0 (kern.pointwise): pointwise instruction #1 reads input #3 of a kernel with 2 inputs"),
            std::string::npos) << e;
}

TEST(Artifact, PointwiseInputMustBroadcast) {
  Plan p = pointwisePlan("cpu");
  p.values[2].shape = {2};
  p.values[2].ld = 2;
  std::string e = errorOf(p);
  EXPECT_NE(e.find("input #1 2 does not broadcast to the result 2x4"), std::string::npos) << e;
}

TEST(Artifact, CudaArtifactMustDefineEveryGeneratedKernel) {
  Plan p = pointwisePlan("cuda");
  p.entries[0].kernels[0].attrs["kernel"] = std::string("diffc_pointwise_7");
  std::string e = errorOf(p);
  EXPECT_NE(e.find("forward kernel #0 calls generated kernel 'diffc_pointwise_7', which the artifact's device "
                   "code (" + std::to_string(p.deviceCode.size()) + " bytes) does not define"),
            std::string::npos) << e;
}

TEST(Artifact, CpuArtifactCarriesNoDeviceCode) {
  Plan p = pointwisePlan("cpu");
  p.deviceCode = {'x', 'y'};
  std::string e = errorOf(p);
  EXPECT_NE(e.find("a CPU artifact carries 2 bytes of device code"), std::string::npos) << e;
}

TEST(Artifact, ElementwiseOpsOnlyAsPointwiseOrBackward) {
  Plan p = pointwisePlan("cpu");
  p.entries[0].kernels[0].op = "dit.add";
  std::string e = errorOf(p);
  EXPECT_NE(e.find("dit.add is executed as a kern.pointwise kernel, not on its own"), std::string::npos) << e;
}

TEST(Artifact, ParameterMustBeAWeight) {
  Plan p = linearPlan();
  p.params.push_back({0, "x"});
  EXPECT_NE(errorOf(p).find("param #2 ('x'): its value is in the arena region, not weights"), std::string::npos)
      << errorOf(p);
}

TEST(Artifact, RepeatedParameterName) {
  Plan p = linearPlan();
  p.params[1].name = "lin.weight";
  EXPECT_NE(errorOf(p).find("param #1: name 'lin.weight' is empty or repeated"), std::string::npos) << errorOf(p);
}

TEST(Artifact, NeedsAForwardEntry) {
  Plan p = linearPlan();
  p.entries[0].name = "backward";
  EXPECT_NE(errorOf(p).find("the plan has neither a 'forward' nor a 'train_step' entry"), std::string::npos);
}

TEST(Artifact, UnknownTarget) {
  Plan p = linearPlan();
  p.target = "tpu";
  EXPECT_NE(errorOf(p).find("target 'tpu' is neither cpu nor cuda"), std::string::npos);
}
