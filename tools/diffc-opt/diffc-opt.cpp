//===- diffc-opt.cpp - pass runner for diffc's dialects -------------------===//
//
// Parses IR in diffc's dialects, runs passes and pipelines by flag, prints
// the result. The lit suite drives every pass through this tool.
//
//===----------------------------------------------------------------------===//

#include "dialects/Dit/IR/DitDialect.h"
#include "dialects/Kern/IR/KernDialect.h"
#include "passes/Passes.h"
#include "passes/Pipelines.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/Extensions/InlinerExtension.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<diffc::dit::DitDialect, diffc::kern::KernDialect, mlir::func::FuncDialect,
                  mlir::arith::ArithDialect>();
  mlir::func::registerInlinerExtension(registry);
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  mlir::registerInlinerPass();
  mlir::registerSymbolDCEPass();
  diffc::registerDiffcPasses();
  diffc::registerPipelines();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "diffc optimizer driver\n", registry));
}
