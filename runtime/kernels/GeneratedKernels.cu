//===- GeneratedKernels.cu - NVRTC build and launch of generated kernels --===//
//
// `diffc compile` writes the CUDA source of an artifact's element-wise
// kernels; this compiles it once per (source, GPU architecture, NVRTC
// version), keeps the cubin in an on-disk cache, and launches the functions
// through the driver API (on the primary context the runtime API made
// current; the driver's functions are looked up at run time, not linked).
//
//===----------------------------------------------------------------------===//

#include "CacheFiles.h"
#include "Common.cuh"

#include <cuda.h>
#include <nvrtc.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <type_traits>

namespace diffrt::cuda {

namespace {

/// The driver API functions this file uses, looked up through the runtime
/// (cudaGetDriverEntryPointByVersion) rather than linked: linking libcuda
/// would stop every binary of the runtime from starting on a machine
/// without the NVIDIA driver, where the GPU tests must skip instead.
struct Driver {
  CUresult (*moduleLoadData)(CUmodule *, const void *) = nullptr;
  CUresult (*moduleUnload)(CUmodule) = nullptr;
  CUresult (*moduleGetFunction)(CUfunction *, CUmodule, const char *) = nullptr;
  CUresult (*launchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                           CUstream, void **, void **) = nullptr;
  CUresult (*getErrorName)(CUresult, const char **) = nullptr;
  CUresult (*getErrorString)(CUresult, const char **) = nullptr;
};

const Driver &driver() {
  static const Driver d = [] {
    Driver r;
    auto get = [](const char *symbol, auto &fn) {
      void *p = nullptr;
      cudaDriverEntryPointQueryResult status;
      cudaError_t e = cudaGetDriverEntryPointByVersion(symbol, &p, 12000, cudaEnableDefault, &status);
      if (e != cudaSuccess || status != cudaDriverEntryPointSuccess || p == nullptr)
        fail("the CUDA driver has no entry point ", symbol, " (", cudaGetErrorString(e), ")");
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    get("cuModuleLoadData", r.moduleLoadData);
    get("cuModuleUnload", r.moduleUnload);
    get("cuModuleGetFunction", r.moduleGetFunction);
    get("cuLaunchKernel", r.launchKernel);
    get("cuGetErrorName", r.getErrorName);
    get("cuGetErrorString", r.getErrorString);
    return r;
  }();
  return d;
}

uint64_t fnv1a(const void *data, size_t n, uint64_t h = 1469598103934665603ull) {
  const auto *p = static_cast<const unsigned char *>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

void checkDriver(CUresult r, const std::string &what) {
  if (r == CUDA_SUCCESS)
    return;
  const char *name = nullptr, *text = nullptr;
  driver().getErrorName(r, &name);
  driver().getErrorString(r, &text);
  fail(what, ": ", name ? name : "CUDA driver error", " (", text ? text : "no description", ")");
}

void checkNvrtc(nvrtcResult r, const std::string &what) {
  if (r != NVRTC_SUCCESS)
    fail(what, ": ", nvrtcGetErrorString(r));
}

// Cache entries: magic, checksum of the cubin, the cubin.
constexpr char kCacheMagic[8] = {'D', 'F', 'C', 'C', 'U', 'B', '0', '1'};

bool readCache(const std::string &path, std::vector<char> &cubin) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return false;
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() <= 16 || std::memcmp(bytes.data(), kCacheMagic, 8) != 0)
    return false;
  uint64_t sum;
  std::memcpy(&sum, bytes.data() + 8, 8);
  if (sum != fnv1a(bytes.data() + 16, bytes.size() - 16))
    return false;
  cubin.assign(bytes.begin() + 16, bytes.end());
  return true;
}

void writeCache(const std::string &path, const std::vector<char> &cubin) {
  std::vector<char> bytes(kCacheMagic, kCacheMagic + 8);
  uint64_t sum = fnv1a(cubin.data(), cubin.size());
  bytes.insert(bytes.end(), reinterpret_cast<const char *>(&sum), reinterpret_cast<const char *>(&sum) + 8);
  bytes.insert(bytes.end(), cubin.begin(), cubin.end());
  // An unwritable cache only costs a recompilation next time.
  (void)replaceCacheFile(path, bytes.data(), bytes.size());
}

std::vector<char> compile(const std::string &source, const std::string &arch, const std::string &what) {
  nvrtcProgram program;
  checkNvrtc(nvrtcCreateProgram(&program, source.c_str(), "diffc_generated.cu", 0, nullptr, nullptr),
             what + ": nvrtcCreateProgram");
  std::string archOption = "--gpu-architecture=" + arch;
  const char *options[] = {archOption.c_str(), "-std=c++17"};
  nvrtcResult result = nvrtcCompileProgram(program, 2, options);
  if (result != NVRTC_SUCCESS) {
    size_t logSize = 0;
    nvrtcGetProgramLogSize(program, &logSize);
    std::string log(logSize, '\0');
    if (logSize)
      nvrtcGetProgramLog(program, log.data());
    nvrtcDestroyProgram(&program);
    if (log.size() > 4000)
      log = log.substr(0, 4000) + "...";
    fail(what, ": NVRTC could not compile the generated kernels for ", arch, ": ",
         nvrtcGetErrorString(result), "\n", log);
  }
  size_t size = 0;
  checkNvrtc(nvrtcGetCUBINSize(program, &size), what + ": nvrtcGetCUBINSize");
  std::vector<char> cubin(size);
  checkNvrtc(nvrtcGetCUBIN(program, cubin.data()), what + ": nvrtcGetCUBIN");
  nvrtcDestroyProgram(&program);
  return cubin;
}

} // namespace

GeneratedKernels::GeneratedKernels(const std::string &source, const std::string &what) : what(what) {
  int device = 0, major = 0, minor = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "compute capability");
  check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "compute capability");
  check(cudaDeviceGetAttribute(&smCount, cudaDevAttrMultiProcessorCount, device), "multiprocessor count");
  check(cudaFree(nullptr), "CUDA context"); // the primary context, current for the driver calls
  std::string arch = "sm_" + std::to_string(major) + std::to_string(minor);
  int nvrtcMajor = 0, nvrtcMinor = 0;
  checkNvrtc(nvrtcVersion(&nvrtcMajor, &nvrtcMinor), what + ": nvrtcVersion");
  std::string key = arch + " nvrtc " + std::to_string(nvrtcMajor) + "." + std::to_string(nvrtcMinor);
  uint64_t hash = fnv1a(key.data(), key.size(), fnv1a(source.data(), source.size()));
  char name[40];
  std::snprintf(name, sizeof(name), "/kernels-%016llx.cubin", static_cast<unsigned long long>(hash));
  std::string dir = cacheDirectory();
  cacheFile = dir.empty() ? "" : dir + name;

  std::vector<char> cubin;
  cached = !cacheFile.empty() && readCache(cacheFile, cubin);
  CUmodule m = nullptr;
  if (cached && driver().moduleLoadData(&m, cubin.data()) != CUDA_SUCCESS) {
    cached = false; // a cubin this driver rejects: rebuild it
    m = nullptr;
  }
  if (!cached) {
    cubin = compile(source, arch, what);
    checkDriver(driver().moduleLoadData(&m, cubin.data()), what + ": loading the generated kernels");
    if (!cacheFile.empty())
      writeCache(cacheFile, cubin);
  }
  module = m;
}

GeneratedKernels::~GeneratedKernels() {
  if (module)
    driver().moduleUnload(static_cast<CUmodule>(module));
}

void *GeneratedKernels::function(const std::string &name) {
  for (auto &[n, f] : functions)
    if (n == name)
      return f;
  CUfunction f = nullptr;
  checkDriver(driver().moduleGetFunction(&f, static_cast<CUmodule>(module), name.c_str()),
              what + ": generated kernel '" + name + "'");
  functions.emplace_back(name, f);
  return f;
}

void GeneratedKernels::pointwise(Stream stream, const std::string &name, const PointwiseOperand *inputs,
                                 size_t count, const PointwiseOperand &out, int64_t rows, int64_t cols) {
  if (rows * cols == 0)
    return;
  auto aligned = [&](const PointwiseOperand &o) {
    return o.single || (o.ld % 8 == 0 && reinterpret_cast<uintptr_t>(o.data) % 16 == 0);
  };
  bool wide = cols % 8 == 0 && aligned(out);
  // The argument struct of the generated function: an operand is
  // {data, rows, ld, single} (four 8-byte words), inputs then the output,
  // then rows, cols and the width.
  std::vector<int64_t> args;
  auto push = [&](const PointwiseOperand &o) {
    args.push_back(static_cast<int64_t>(reinterpret_cast<uintptr_t>(o.data)));
    args.push_back(o.rows);
    args.push_back(o.ld);
    args.push_back(o.single ? 1 : 0);
  };
  for (size_t i = 0; i < count; ++i) {
    push(inputs[i]);
    wide = wide && aligned(inputs[i]);
  }
  push(out);
  int64_t width = wide ? 8 : 1;
  args.insert(args.end(), {rows, cols, width});
  int64_t threads = rows * (cols / width);
  auto blocks = static_cast<unsigned>(std::min<int64_t>((threads + 255) / 256, int64_t{smCount} * 16));
  void *params[] = {args.data()};
  checkDriver(driver().launchKernel(static_cast<CUfunction>(function(name)), blocks, 1, 1, 256, 1, 1, 0,
                             static_cast<CUstream>(stream), params, nullptr),
              what + ": launching generated kernel '" + name + "'");
}

} // namespace diffrt::cuda
