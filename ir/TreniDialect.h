//===- TreniDialect.h - the treni dialect -----------------------*- C++ -*-===//
#pragma once

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace treni {
/// The KV cache, as a memory-effect resource.
struct KVCacheResource
    : public mlir::SideEffects::Resource::Base<KVCacheResource> {
  llvm::StringRef getName() final { return "treni.kv_cache"; }
};

/// Name of the module attribute that maps weight names to their location.
inline constexpr llvm::StringLiteral kWeightsAttrName = "treni.weights";
} // namespace treni

#include "ir/TreniDialect.h.inc"

#define GET_OP_CLASSES
#include "ir/TreniOps.h.inc"
