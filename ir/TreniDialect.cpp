//===- TreniDialect.cpp - treni dialect and op verifiers -----------------===//
//
// Shape rules ODS cannot express: matching dimensions between operands, the
// KV-cache symbol, and weights against the module's weight map.
//
//===----------------------------------------------------------------------===//

#include "ir/TreniDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace treni;

#include "ir/TreniDialect.cpp.inc"

void TreniDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "ir/TreniOps.cpp.inc"
      >();
}

#define GET_OP_CLASSES
#include "ir/TreniOps.cpp.inc"

LogicalResult TreniDialect::verifyOperationAttribute(Operation *op,
                                                     NamedAttribute attribute) {
  if (attribute.getName() != kOneSequenceAttrName)
    return success();
  if (!isa<UnitAttr>(attribute.getValue()))
    return op->emitOpError()
           << "'" << kOneSequenceAttrName << "' must be a unit attribute";
  if (!isa<func::FuncOp>(op))
    return op->emitOpError()
           << "'" << kOneSequenceAttrName << "' marks functions only";
  return success();
}

bool treni::inOneSequenceFunction(Operation *op) {
  auto function = isa<func::FuncOp>(op) ? cast<func::FuncOp>(op)
                                        : op->getParentOfType<func::FuncOp>();
  return function && function->hasAttr(kOneSequenceAttrName);
}

namespace {
/// True when two dimensions may be equal (either is dynamic, or they match).
bool compatible(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

/// A dimension for a diagnostic: '?' when dynamic.
std::string dimString(int64_t dim) {
  return ShapedType::isDynamic(dim) ? "?" : std::to_string(dim);
}

RankedTensorType tensorType(Value value) {
  return cast<RankedTensorType>(value.getType());
}

/// Checks that a 2-D result has `rows` rows and `cols` columns.
LogicalResult verifyMatrixResult(Operation *op, Value result, int64_t rows,
                                 int64_t cols) {
  auto type = tensorType(result);
  if (!compatible(type.getDimSize(0), rows))
    return op->emitOpError() << "result has " << dimString(type.getDimSize(0))
                             << " rows but the input has " << dimString(rows);
  if (type.getDimSize(1) != cols)
    return op->emitOpError() << "result has " << dimString(type.getDimSize(1))
                             << " columns, expected " << dimString(cols);
  return success();
}

/// Resolves the `cache` symbol of `op` to a treni.kv_cache.
FailureOr<KvCacheOp> lookupCache(Operation *op, FlatSymbolRefAttr cache,
                                 SymbolTableCollection &symbolTable) {
  auto decl = symbolTable.lookupNearestSymbolFrom<KvCacheOp>(op, cache);
  if (!decl)
    return op->emitOpError()
           << "'" << cache.getValue() << "' does not name a treni.kv_cache";
  return decl;
}

/// Checks the layer index, the row width and the element type against the
/// cache declaration.
LogicalResult verifyCacheUse(Operation *op, KvCacheOp decl, int64_t layer,
                             int64_t numKvHeads, int64_t headDim,
                             Type elementType) {
  if (elementType != decl.getElementType())
    return op->emitOpError()
           << "element type " << elementType << " differs from cache '"
           << decl.getSymName() << "' of " << decl.getElementType();
  if (layer >= (int64_t)decl.getNumLayers())
    return op->emitOpError()
           << "layer " << layer << " is out of range: cache '"
           << decl.getSymName() << "' has " << decl.getNumLayers() << " layers";
  if (numKvHeads != (int64_t)decl.getNumKvHeads() ||
      headDim != (int64_t)decl.getHeadDim())
    return op->emitOpError()
           << "uses " << numKvHeads << " KV heads of " << headDim
           << " but cache '" << decl.getSymName() << "' holds "
           << decl.getNumKvHeads() << " KV heads of " << decl.getHeadDim();
  return success();
}
} // namespace

//===----------------------------------------------------------------------===//
// WeightOp
//===----------------------------------------------------------------------===//

LogicalResult WeightOp::verify() {
  if (getName().empty())
    return emitOpError("needs a non-empty tensor name");
  auto type = getResult().getType();
  if (!type.hasStaticShape())
    return emitOpError("weights must have a static shape");
  auto module = (*this)->getParentOfType<ModuleOp>();
  if (!module)
    return success();
  auto weights = module->getAttrOfType<DictionaryAttr>(kWeightsAttrName);
  if (!weights)
    return success();
  auto entry = weights.getAs<DictionaryAttr>(getName());
  if (!entry)
    return emitOpError() << "'" << getName()
                         << "' is not in the module's weight map";
  auto shape = entry.getAs<DenseI64ArrayAttr>("shape");
  if (!shape || shape.asArrayRef() != type.getShape())
    return emitOpError() << "type " << type << " does not match the shape of '"
                         << getName() << "' in the weight map";
  auto dtype = entry.getAs<StringAttr>("dtype");
  Type element = type.getElementType();
  StringRef expected = element.isBF16()  ? "BF16"
                       : element.isF16() ? "F16"
                                         : "F32";
  if (!dtype || dtype.getValue() != expected)
    return emitOpError() << "element type " << element
                         << " does not match the dtype of '" << getName()
                         << "' in the weight map";
  return success();
}

//===----------------------------------------------------------------------===//
// ConcatOp
//===----------------------------------------------------------------------===//

LogicalResult ConcatOp::verify() {
  if (getParts().size() < 2)
    return emitOpError("needs at least two parts");
  auto first = tensorType(getParts().front());
  int64_t rows = 0;
  for (Value part : getParts()) {
    if (!part.getDefiningOp<WeightOp>() && !part.getDefiningOp<ConcatOp>())
      return emitOpError("parts must be treni.weight or treni.concat results");
    auto type = tensorType(part);
    if (!type.hasStaticShape())
      return emitOpError("parts must have a static shape");
    if (type.getElementType() != first.getElementType())
      return emitOpError() << "part type " << type
                           << " differs in element type from " << first;
    if (type.getRank() != first.getRank() ||
        type.getShape().drop_front() != first.getShape().drop_front())
      return emitOpError() << "part type " << type
                           << " differs in trailing dimensions from " << first;
    rows += type.getDimSize(0);
  }
  SmallVector<int64_t> shape(first.getShape());
  shape[0] = rows;
  auto result = tensorType(getResult());
  if (result.getShape() != ArrayRef<int64_t>(shape) ||
      result.getElementType() != first.getElementType())
    return emitOpError() << "result type " << result
                         << " is not the concatenation of the parts";
  return success();
}

//===----------------------------------------------------------------------===//
// Compute ops
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::verify() {
  auto table = tensorType(getTable());
  return verifyMatrixResult(*this, getResult(),
                            tensorType(getIds()).getDimSize(0),
                            table.getDimSize(1));
}

LogicalResult RmsNormOp::verify() {
  auto input = tensorType(getInput());
  int64_t width = input.getDimSize(1);
  int64_t group = tensorType(getWeight()).getDimSize(0);
  if (ShapedType::isDynamic(width) || ShapedType::isDynamic(group))
    return emitOpError("row width and weight size must be static");
  if (group == 0 || width % group != 0)
    return emitOpError() << "row width " << width
                         << " is not a multiple of the weight size " << group;
  if (tensorType(getResult()).getShape() != input.getShape())
    return emitOpError() << "result type " << getResult().getType()
                         << " differs in shape from the input type " << input;
  return success();
}

/// x @ weight^T (+ bias): static features that agree, a bias per output.
static LogicalResult verifyProjection(Operation *op, Value input, Value weight,
                                      Value bias) {
  auto x = tensorType(input);
  auto w = tensorType(weight);
  if (x.isDynamicDim(1) || !w.hasStaticShape())
    return op->emitOpError("feature dimensions must be static");
  if (x.getDimSize(1) != w.getDimSize(1))
    return op->emitOpError()
           << "input has " << x.getDimSize(1)
           << " features but the weight expects " << w.getDimSize(1);
  if (bias && tensorType(bias).getDimSize(0) != w.getDimSize(0))
    return op->emitOpError()
           << "bias has " << tensorType(bias).getDimSize(0)
           << " elements but the weight has " << w.getDimSize(0) << " outputs";
  return success();
}

LogicalResult LinearOp::verify() {
  if (failed(verifyProjection(*this, getInput(), getWeight(), getBias())))
    return failure();
  return verifyMatrixResult(*this, getResult(),
                            tensorType(getInput()).getDimSize(0),
                            tensorType(getWeight()).getDimSize(0));
}

LogicalResult MatvecOp::verify() {
  auto input = tensorType(getInput());
  auto weight = tensorType(getWeight());
  if (input.getDimSize(0) != 1)
    return emitOpError() << "input must be one row, got "
                         << dimString(input.getDimSize(0));
  if (failed(verifyProjection(*this, getInput(), getWeight(), getBias())))
    return failure();
  int64_t k = input.getDimSize(1), n = weight.getDimSize(0);
  if (!getNormWeight() != !getEpsilon())
    return emitOpError("norm and epsilon come together");
  if (getNormWeight() && tensorType(getNormWeight()).getDimSize(0) != k)
    return emitOpError() << "norm weight has "
                         << tensorType(getNormWeight()).getDimSize(0)
                         << " elements but the row has " << k;
  if (getGated() && n % 2 != 0)
    return emitOpError() << "gated needs an even number of weight rows, got "
                         << n;
  if (getGated() && getResidual())
    return emitOpError("gated and residual do not combine");
  if (getResidual() && getResidual().getType() != getResult().getType())
    return emitOpError() << "residual type " << getResidual().getType()
                         << " differs from the result type "
                         << getResult().getType();
  return verifyMatrixResult(*this, getResult(), 1, getGated() ? n / 2 : n);
}

LogicalResult RopeOp::verify() {
  int64_t headDim = getHeadDim();
  if (headDim % 2 != 0)
    return emitOpError() << "head_dim " << headDim << " must be even";
  int64_t width = tensorType(getInput()).getDimSize(1);
  if (ShapedType::isDynamic(width))
    return emitOpError("row width must be static");
  if (width % headDim != 0)
    return emitOpError() << "row width " << width
                         << " is not a multiple of head_dim " << headDim;
  if (!compatible(tensorType(getPositions()).getDimSize(0),
                  tensorType(getInput()).getDimSize(0)))
    return emitOpError("needs one position per input row");
  if (getRotaryDim()) {
    int64_t rotaryDim = getRotaryWidth();
    if (rotaryDim < 2 || rotaryDim % 2 != 0 || rotaryDim > headDim)
      return emitOpError() << "rotary_dim " << rotaryDim
                           << " must be even and in [2, head_dim = " << headDim
                           << "]";
  }
  int present = (getLlama3Factor() ? 1 : 0) +
                (getLlama3LowFreqFactor() ? 1 : 0) +
                (getLlama3HighFreqFactor() ? 1 : 0) +
                (getLlama3OriginalMaxPosition() ? 1 : 0);
  if (present != 0 && present != 4)
    return emitOpError("llama3 scaling needs all of llama3_factor, "
                       "llama3_low_freq_factor, llama3_high_freq_factor and "
                       "llama3_original_max_position");
  if (present == 4 && (getLlama3Factor()->convertToDouble() <= 0 ||
                       getLlama3LowFreqFactor()->convertToDouble() <= 0 ||
                       *getLlama3OriginalMaxPosition() <= 0))
    return emitOpError("llama3 factors and original max position must be "
                       "positive");
  if (present == 4 && getLlama3HighFreqFactor()->convertToDouble() <=
                          getLlama3LowFreqFactor()->convertToDouble())
    return emitOpError(
        "llama3_high_freq_factor must exceed llama3_low_freq_factor");
  return success();
}

LogicalResult CacheWriteOp::verify() {
  if (getKey().getType() != getValue().getType())
    return emitOpError() << "key type " << getKey().getType()
                         << " differs from value type " << getValue().getType();
  if (!compatible(tensorType(getPositions()).getDimSize(0),
                  tensorType(getKey()).getDimSize(0)))
    return emitOpError("needs one position per key row");
  return success();
}

LogicalResult
CacheWriteOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto decl = lookupCache(*this, getCacheAttr(), symbolTable);
  if (failed(decl))
    return failure();
  int64_t width = tensorType(getKey()).getDimSize(1);
  int64_t headDim = decl->getHeadDim();
  if (ShapedType::isDynamic(width) || width % headDim != 0)
    return emitOpError() << "key rows have " << dimString(width)
                         << " elements, not a multiple of the head_dim "
                         << headDim << " of cache '" << decl->getSymName()
                         << "'";
  return verifyCacheUse(*this, *decl, getLayer(), width / headDim, headDim,
                        tensorType(getKey()).getElementType());
}

LogicalResult QkvRopeCacheOp::verify() {
  int64_t heads = getNumHeads(), kvHeads = getNumKvHeads();
  int64_t headDim = getHeadDim();
  if (heads % kvHeads != 0)
    return emitOpError() << "num_heads " << heads
                         << " is not a multiple of num_kv_heads " << kvHeads;
  if (headDim % 2 != 0)
    return emitOpError() << "head_dim " << headDim << " must be even";
  auto qkv = tensorType(getQkv());
  int64_t width = qkv.getDimSize(1);
  if (width != (heads + 2 * kvHeads) * headDim)
    return emitOpError() << "qkv rows have " << dimString(width)
                         << " elements, expected (num_heads + 2 * "
                            "num_kv_heads) * head_dim = "
                         << (heads + 2 * kvHeads) * headDim;
  if (failed(verifyMatrixResult(*this, getResult(), qkv.getDimSize(0),
                                heads * headDim)))
    return failure();
  if (!compatible(tensorType(getPositions()).getDimSize(0), qkv.getDimSize(0)))
    return emitOpError("needs one position per qkv row");
  if (!getNorms().empty() && getNorms().size() != 2)
    return emitOpError("takes no norms or two (q and k)");
  for (Value norm : getNorms())
    if (tensorType(norm).getDimSize(0) != headDim)
      return emitOpError() << "norm weights must have head_dim = " << headDim
                           << " elements";
  if (getNorms().empty() != !getEpsilon())
    return emitOpError("epsilon goes with the norms, and only with them");
  if (getEpsilon() && getEpsilon()->convertToDouble() <= 0)
    return emitOpError("epsilon must be positive");
  int present = (getLlama3Factor() ? 1 : 0) +
                (getLlama3LowFreqFactor() ? 1 : 0) +
                (getLlama3HighFreqFactor() ? 1 : 0) +
                (getLlama3OriginalMaxPosition() ? 1 : 0);
  if (present != 0 && present != 4)
    return emitOpError("llama3 scaling needs all of llama3_factor, "
                       "llama3_low_freq_factor, llama3_high_freq_factor and "
                       "llama3_original_max_position");
  return success();
}

LogicalResult
QkvRopeCacheOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto decl = lookupCache(*this, getCacheAttr(), symbolTable);
  if (failed(decl))
    return failure();
  return verifyCacheUse(*this, *decl, getLayer(), getNumKvHeads(), getHeadDim(),
                        tensorType(getResult()).getElementType());
}

/// The head layout checks shared by attention and attention_seq1.
template <typename AttentionLikeOp>
LogicalResult verifyAttentionHeads(AttentionLikeOp op) {
  if (op.getNumHeads() % op.getNumKvHeads() != 0)
    return op.emitOpError()
           << "num_heads " << op.getNumHeads()
           << " is not a multiple of num_kv_heads " << op.getNumKvHeads();
  int64_t width = tensorType(op.getQuery()).getDimSize(1);
  if (width != (int64_t)(op.getNumHeads() * op.getHeadDim()))
    return op.emitOpError() << "query rows have " << dimString(width)
                            << " elements, expected num_heads * head_dim = "
                            << op.getNumHeads() * op.getHeadDim();
  return success();
}

/// The KV-cache symbol checks shared by attention and attention_seq1.
template <typename AttentionLikeOp>
LogicalResult verifyAttentionCache(AttentionLikeOp op,
                                   SymbolTableCollection &symbolTable) {
  auto decl = lookupCache(op, op.getCacheAttr(), symbolTable);
  if (failed(decl))
    return failure();
  return verifyCacheUse(op, *decl, op.getLayer(), op.getNumKvHeads(),
                        op.getHeadDim(),
                        tensorType(op.getQuery()).getElementType());
}

LogicalResult AttentionOp::verify() {
  if (failed(verifyAttentionHeads(*this)))
    return failure();
  if (!compatible(tensorType(getPositions()).getDimSize(0),
                  tensorType(getQuery()).getDimSize(0)))
    return emitOpError("needs one position per query row");
  return success();
}

LogicalResult
AttentionOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  return verifyAttentionCache(*this, symbolTable);
}

LogicalResult AttentionSeq1Op::verify() {
  if (failed(verifyAttentionHeads(*this)))
    return failure();
  auto query = tensorType(getQuery());
  if (!compatible(tensorType(getPositions()).getDimSize(0),
                  query.getDimSize(0)))
    return emitOpError("needs one position per query row");
  return success();
}

LogicalResult
AttentionSeq1Op::verifySymbolUses(SymbolTableCollection &symbolTable) {
  return verifyAttentionCache(*this, symbolTable);
}

LogicalResult AttentionFlashOp::verify() {
  if (failed(verifyAttentionHeads(*this)))
    return failure();
  auto query = tensorType(getQuery());
  if (!compatible(tensorType(getPositions()).getDimSize(0),
                  query.getDimSize(0)))
    return emitOpError("needs one position per query row");
  if (!supportsElementType(query.getElementType()))
    return emitOpError() << "needs a bf16 or f16 query, got "
                         << query.getElementType();
  if (!supportsHeadDim(getHeadDim()))
    return emitOpError() << "head_dim " << getHeadDim()
                         << " is not a multiple of 16 in [16, 128]";
  return success();
}

LogicalResult
AttentionFlashOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  return verifyAttentionCache(*this, symbolTable);
}

LogicalResult ResidualNormOp::verify() {
  auto residual = tensorType(getResidual());
  ArrayRef<int64_t> shape = residual.getShape();
  if (tensorType(getBranch()).getShape() != shape ||
      tensorType(getSum()).getShape() != shape ||
      tensorType(getNormed()).getShape() != shape)
    return emitOpError("residual, branch, sum and normed must share a shape");
  int64_t width = residual.getDimSize(1);
  int64_t weightSize = tensorType(getWeight()).getDimSize(0);
  if (ShapedType::isDynamic(width) || weightSize != width)
    return emitOpError() << "weight has " << dimString(weightSize)
                         << " elements, expected the row width "
                         << dimString(width);
  return success();
}

LogicalResult SiluMulOp::verify() {
  auto input = tensorType(getInput());
  int64_t width = input.getDimSize(1);
  if (ShapedType::isDynamic(width) || width % 2 != 0)
    return emitOpError() << "input rows have " << dimString(width)
                         << " elements, expected an even number";
  return verifyMatrixResult(*this, getResult(), input.getDimSize(0), width / 2);
}

LogicalResult TakeLastOp::verify() {
  auto input = tensorType(getInput());
  auto result = tensorType(getResult());
  if (result.getDimSize(0) != 1)
    return emitOpError() << "result must have one row, got "
                         << dimString(result.getDimSize(0));
  if (result.getDimSize(1) != input.getDimSize(1) ||
      result.getElementType() != input.getElementType())
    return emitOpError() << "result row type " << result
                         << " does not match the input " << input;
  return success();
}

LogicalResult KernelOp::verify() {
  if (getTemplateName().empty())
    return emitOpError("needs a template name");
  return success();
}
