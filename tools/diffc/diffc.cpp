//===- diffc.cpp - the diffc command-line driver --------------------------===//
//
// Subcommands: list, import, stats, compile (and, through the runtime,
// sample). Errors go to stderr with a non-zero exit code.
//
//===----------------------------------------------------------------------===//


#include "codegen/EmitArtifact.h"
#include "diffrt/Args.h"
#include "diffrt/Commands.h"
#include "dialects/Dit/Analysis/ModelStats.h"
#include "dialects/Dit/IR/DitDialect.h"
#include "frontends/ModelZoo.h"
#include "passes/Passes.h"
#include "passes/Pipelines.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/Extensions/InlinerExtension.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>

using namespace mlir;
using namespace diffc;
using diffrt::Args;

namespace {

int usage(llvm::raw_ostream &os) {
  os << "usage: diffc <command> [options]\n"
        "commands:\n"
        "  list                          the model zoo\n"
        "  import NAME [-o FILE]         write the dit IR of a zoo model\n"
        "      --batch N --image-size 256|512 --learn-sigma true|false --num-classes N\n"
        "      --attention plain|qk-norm --mask-ratio R --balance-coef A\n"
        "      overrides: --depth --hidden --heads --experts --latent-size --head-dim --mixer-depth\n"
        "                 --mixer-hidden --caption-channels --caption-tokens\n"
        "  stats FILE.mlir|-             parameters and forward cost, per block kind\n"
        "  sample MODEL.dfx --weights W.safetensors [-o grid.png] [--sampler ddpm:250|ddim:N|rf:N|edm:N]\n"
        "      [--cfg S] [--class 1,2,...] [--seed N] [--raw out.safetensors] [--captions c.safetensors]\n"
        "      [--device cpu|cuda] [--columns N] [--zoom N] [--quiet]\n"
        "  train MODEL.dfx --ckpt-dir DIR [--data fashion-mnist|latents:FILE] [--steps N] [--lr X]\n"
        "      [--resume] [--save-every N] [--log-every N] [--seed N] [--ema-decay D] [--grad-clip C]\n"
        "      [--weight-decay W] [--weights W.safetensors] [--device cpu|cuda] [--loss-scale S]\n"
        "  bench MODEL.dfx [--device cpu|cuda] [--iterations N] [--warmup N] [--json FILE] [--label L]\n"
        "      [--sample ddpm:250|ddim:N|rf:N|edm:N --cfg S]   (time a whole sampling run)\n"
        "      [--profile]   (also each kernel's time, summed by kernel class)\n"
        "  compile FILE.mlir -o FILE.dfx [--emit=PHASE] --target cpu|cuda --dtype f32|f16|bf16\n"
        "      [--mode sample|train] [--objective ddpm|rf|edm] [--remat none|norms|products|norms,products]\n"
        "      phases:";
  for (const Phase &p : pipelinePhases())
    os << " " << p.name;
  os << " artifact (the default: write the .dfx) cuda (print the generated CUDA kernels)\n";
  return 2;
}

int error(const std::string &message) {
  llvm::errs() << "diffc: error: " << message << "\n";
  return 1;
}

void registerDialects(DialectRegistry &registry) {
  registry.insert<dit::DitDialect, kern::KernDialect, func::FuncDialect, arith::ArithDialect>();
  func::registerInlinerExtension(registry);
}

std::optional<int64_t> parseInt(const std::string &text) {
  char *end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end)
    return std::nullopt;
  return v;
}

std::optional<double> parseDouble(const std::string &text) {
  char *end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end)
    return std::nullopt;
  return v;
}

/// Writes `text` to `path` ("-" or empty: stdout), keeping nothing on failure.
int writeOutput(const std::string &path, const std::string &text) {
  std::string errorMessage;
  auto file = openOutputFile(path.empty() ? "-" : path, &errorMessage);
  if (!file)
    return error(errorMessage);
  file->os() << text;
  file->keep();
  return 0;
}

const std::set<std::string> kImportOptions = {
    "--batch", "--image-size", "--learn-sigma", "--num-classes", "--attention", "--mask-ratio",
    "--balance-coef", "-o", "--depth", "--hidden", "--heads", "--experts", "--latent-size",
    "--head-dim", "--mixer-depth", "--mixer-hidden", "--caption-channels", "--caption-tokens"};

/// Reads zoo options from parsed arguments.
bool zooOptions(const Args &args, frontends::ZooOptions &options, std::string &message) {
  auto integer = [&](const char *name, auto assign) {
    if (auto v = args.get(name)) {
      auto parsed = parseInt(*v);
      if (!parsed) {
        message = std::string(name) + " expects an integer, got '" + *v + "'";
        return false;
      }
      assign(*parsed);
    }
    return true;
  };
  auto real = [&](const char *name, auto assign) {
    if (auto v = args.get(name)) {
      auto parsed = parseDouble(*v);
      if (!parsed) {
        message = std::string(name) + " expects a number, got '" + *v + "'";
        return false;
      }
      assign(*parsed);
    }
    return true;
  };
  if (!integer("--batch", [&](int64_t v) { options.batch = v; }) ||
      !integer("--image-size", [&](int64_t v) { options.imageSize = v; }) ||
      !integer("--num-classes", [&](int64_t v) { options.numClasses = v; }) ||
      !real("--mask-ratio", [&](double v) { options.maskRatio = v; }) ||
      !real("--balance-coef", [&](double v) { options.balanceCoef = v; }) ||
      !integer("--depth", [&](int64_t v) { options.depth = v; }) ||
      !integer("--hidden", [&](int64_t v) { options.hidden = v; }) ||
      !integer("--heads", [&](int64_t v) { options.heads = v; }) ||
      !integer("--experts", [&](int64_t v) { options.experts = v; }) ||
      !integer("--latent-size", [&](int64_t v) { options.latentSize = v; }) ||
      !integer("--head-dim", [&](int64_t v) { options.headDim = v; }) ||
      !integer("--mixer-depth", [&](int64_t v) { options.mixerDepth = v; }) ||
      !integer("--mixer-hidden", [&](int64_t v) { options.mixerHidden = v; }) ||
      !integer("--caption-channels", [&](int64_t v) { options.captionChannels = v; }) ||
      !integer("--caption-tokens", [&](int64_t v) { options.captionTokens = v; }))
    return false;
  if (auto v = args.get("--learn-sigma")) {
    if (*v != "true" && *v != "false") {
      message = "--learn-sigma expects true or false, got '" + *v + "'";
      return false;
    }
    options.learnSigma = *v == "true";
  }
  if (auto v = args.get("--attention"))
    options.attention = *v;
  return true;
}

int cmdList() {
  for (const auto &e : frontends::zooEntries())
    llvm::outs() << llvm::formatv("{0,-20} {1}\n", e.name, e.description);
  return 0;
}

int cmdImport(const std::vector<std::string> &argv) {
  Args args;
  std::string message;
  if (!args.parse(argv, kImportOptions, {}, message))
    return error(message);
  if (args.positional.size() != 1)
    return error("import takes one model name (see `diffc list`)");
  frontends::ZooOptions options;
  if (!zooOptions(args, options, message))
    return error(message);
  DialectRegistry registry;
  registerDialects(registry);
  MLIRContext context(registry);
  auto module = frontends::importZooModel(&context, args.positional[0], options, message);
  if (!module)
    return error(message);
  std::string text;
  llvm::raw_string_ostream os(text);
  module->print(os);
  os << "\n";
  return writeOutput(args.get("-o").value_or("-"), text);
}

OwningOpRef<ModuleOp> parseFile(const std::string &path, MLIRContext &context,
                                llvm::SourceMgr &sourceMgr) {
  std::string message;
  auto file = openInputFile(path, &message);
  if (!file) {
    error(message);
    return {};
  }
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  return parseSourceFile<ModuleOp>(sourceMgr, &context);
}

int cmdStats(const std::vector<std::string> &argv) {
  Args args;
  std::string message;
  if (!args.parse(argv, {}, {}, message))
    return error(message);
  if (args.positional.size() != 1)
    return error("stats takes one .mlir file ('-' for stdin)");
  DialectRegistry registry;
  registerDialects(registry);
  MLIRContext context(registry);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler handler(sourceMgr, &context);
  auto module = parseFile(args.positional[0], context, sourceMgr);
  if (!module)
    return 1;
  PassManager pm(&context);
  pm.addPass(createDitVerifyFrontendContract());
  if (failed(pm.run(*module)))
    return 1;
  auto stats = dit::computeModelStats(*module);
  if (failed(stats))
    return 1;
  llvm::outs() << dit::formatModelStats(*stats);
  return 0;
}

int cmdCompile(const std::vector<std::string> &argv) {
  Args args;
  std::string message;
  if (!args.parse(argv, {"--emit", "--target", "--dtype", "-o", "--mode", "--objective", "--remat"}, {}, message))
    return error(message);
  if (args.positional.size() != 1)
    return error("compile takes one .mlir file ('-' for stdin)");
  PipelineOptions options;
  options.target = args.get("--target").value_or("cpu");
  options.mode = args.get("--mode").value_or("sample");
  // Sampling on the GPU defaults to f16, training to bf16 (f32's exponent
  // range: no loss scaling needed).
  options.dtype = args.get("--dtype").value_or(options.target != "cuda" ? "f32"
                                               : options.mode == "train" ? "bf16" : "f16");
  if (options.target != "cpu" && options.target != "cuda")
    return error("--target must be cpu or cuda, got '" + options.target + "'");
  if (options.dtype != "f32" && options.dtype != "f16" && options.dtype != "bf16")
    return error("--dtype must be f32, f16 or bf16, got '" + options.dtype + "'");
  options.objective = args.get("--objective").value_or("");
  options.remat = args.get("--remat").value_or("none");
  if (options.remat != "none" && options.remat != "norms" && options.remat != "products" &&
      options.remat != "norms,products" && options.remat != "products,norms")
    return error("--remat must be none, norms, products or norms,products, got '" + options.remat + "'");
  if (options.mode != "sample" && options.mode != "train")
    return error("--mode must be sample or train, got '" + options.mode + "'");
  if (!options.objective.empty() && options.objective != "ddpm" && options.objective != "rf" &&
      options.objective != "edm")
    return error("--objective must be ddpm, rf or edm, got '" + options.objective + "'");
  if (options.target == "cpu" && options.dtype != "f32")
    return error("the CPU backend executes f32 (got --dtype " + options.dtype + ")");
  int phases = static_cast<int>(pipelinePhases().size());
  std::string emit = args.get("--emit").value_or("artifact");
  // "cuda": the generated CUDA source the artifact would carry.
  bool cudaSource = emit == "cuda";
  if (cudaSource && options.target != "cuda")
    return error("--emit=cuda prints the generated CUDA kernels of a --target cuda compilation");
  int last = emit == "artifact" || cudaSource ? phases - 1 : findPhase(emit);
  if (last < 0) {
    std::string known;
    for (const Phase &p : pipelinePhases())
      known += " " + p.name.str();
    return error("unknown phase '" + emit + "'; phases:" + known + " artifact cuda");
  }
  std::string output = args.get("-o").value_or(emit == "artifact" ? "" : "-");
  if (output.empty() || (emit == "artifact" && output == "-"))
    return error("compile writes the artifact to a file: give -o FILE.dfx (or --emit=PHASE to print IR)");
  DialectRegistry registry;
  registerDialects(registry);
  MLIRContext context(registry);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler handler(sourceMgr, &context);
  auto module = parseFile(args.positional[0], context, sourceMgr);
  if (!module)
    return 1;
  PassManager pm(&context);
  buildPipeline(pm, options, last);
  if (failed(pm.run(*module)))
    return 1;
  if (cudaSource) {
    FailureOr<diffrt::Plan> plan = codegen::buildPlan(*module, options.target);
    if (failed(plan))
      return 1;
    return writeOutput(output, std::string(plan->deviceCode.begin(), plan->deviceCode.end()));
  }
  if (emit != "artifact") {
    std::string text;
    llvm::raw_string_ostream os(text);
    module->print(os);
    os << "\n";
    return writeOutput(output, text);
  }
  if (failed(codegen::emitArtifact(*module, options.target, output)))
    return 1;
  DictionaryAttr plan;
  for (auto f : module->getOps<func::FuncOp>())
    if (auto p = f->getAttrOfType<DictionaryAttr>("kern.plan"))
      plan = p;
  auto mib = [&](StringRef name) {
    return llvm::formatv("{0:F2} MiB", cast<IntegerAttr>(plan.get(name)).getInt() / 1048576.0).str();
  };
  llvm::errs() << "diffc: wrote " << output << " (" << options.target << ", " << options.dtype
               << "): weights " << mib("weights_bytes") << ", constants " << mib("constants_bytes")
               << ", arena peak " << mib("arena_bytes") << "\n";
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  if (argc < 2)
    return usage(llvm::errs());
  std::string command = argv[1];
  std::vector<std::string> rest(argv + 2, argv + argc);
  if (command == "list")
    return cmdList();
  if (command == "import")
    return cmdImport(rest);
  if (command == "stats")
    return cmdStats(rest);
  if (command == "compile")
    return cmdCompile(rest);
  if (command == "sample")
    return diffrt::runSampleCommand(rest);
  if (command == "bench")
    return diffrt::runBenchCommand(rest);
  if (command == "train")
    return diffrt::runTrainCommand(rest);
  if (command == "help" || command == "--help" || command == "-h") {
    usage(llvm::outs());
    return 0;
  }
  llvm::errs() << "diffc: error: unknown command '" << command << "'\n";
  return usage(llvm::errs());
}
