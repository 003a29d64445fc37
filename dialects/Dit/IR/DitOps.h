//===- DitOps.h - dit operations --------------------------------*- C++ -*-===//
//
// The generated op classes of the dit dialect. Include DitDialect.h instead.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_DIALECTS_DIT_IR_DITOPS_H
#define DIFFC_DIALECTS_DIT_IR_DITOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/Dit/IR/DitAttrs.h"

#define GET_OP_CLASSES
#include "dialects/Dit/IR/DitOps.h.inc"

namespace diffc::dit {
/// dit.attention's constraints C1–C3 on rank-3 query, key and value: every
/// width divides into num_heads heads, query and key heads are equally
/// wide, key and value agree on batch and length and the query on batch.
/// kern.attention states the same constraints and calls this.
mlir::LogicalResult verifyAttentionOperands(mlir::Operation *op, mlir::RankedTensorType q,
                                            mlir::RankedTensorType k, mlir::RankedTensorType v,
                                            int64_t heads);
} // namespace diffc::dit

#endif // DIFFC_DIALECTS_DIT_IR_DITOPS_H
