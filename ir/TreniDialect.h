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

/// Name of the unit attribute of a function whose rows all belong to one
/// sequence, at consecutive positions (@prefill, @decode). A function without
/// it (@step) may mix rows of several sequences, each with its own positions
/// and KV rows, so rewrites that let rows share work across the call (the
/// flash prefill kernel's K/V tiles) must leave it alone.
inline constexpr llvm::StringLiteral kOneSequenceAttrName =
    "treni.one_sequence";

/// Whether `op` lies in a function marked `treni.one_sequence`.
bool inOneSequenceFunction(mlir::Operation *op);
} // namespace treni

#include "ir/TreniDialect.h.inc"

#define GET_OP_CLASSES
#include "ir/TreniOps.h.inc"
