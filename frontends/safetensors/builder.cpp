//===- builder.cpp - Qwen2 / Llama / Qwen3 -> treni IR -------------------===//

#include "frontends/safetensors/builder.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "ir/TreniDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"

namespace treni {
namespace {
using namespace mlir;

Type elementType(MLIRContext &context, DType dtype) {
  switch (dtype) {
  case DType::BF16:
    return BFloat16Type::get(&context);
  case DType::F16:
    return Float16Type::get(&context);
  case DType::F32:
    return Float32Type::get(&context);
  }
  return {};
}

/// The functions of the module: the same model body, differing in how many
/// rows come in, which rows get logits and whether the rows are one sequence.
struct FunctionShape {
  const char *name;
  /// Rows per call; ShapedType::kDynamic for any number.
  int64_t rows;
  /// Logits of the last row only (treni.take_last before the final norm).
  bool lastRowOnly;
  /// Marked treni.one_sequence: the rows are consecutive positions of one
  /// sequence.
  bool oneSequence;
  /// Ends at the final norm: every row's normalised hidden state (f32), no
  /// lm_head (embedding models pool these).
  bool hiddenStates = false;
};

/// @prefill: a prompt chunk of one sequence, sampled at its last row.
/// @decode: one token. @step: rows of any sequences (continuous batching),
/// each with its own position and KV rows, all of them with logits (a chunk's
/// inner rows are not sampled, but the caller picks which rows to read).
/// @embed: @step's rows, ending at the final norm: each row's hidden state
/// (embeddings and pooling; no logits).
constexpr FunctionShape kFunctions[] = {
    {"prefill", ShapedType::kDynamic, true, true},
    {"decode", 1, true, true},
    {"step", ShapedType::kDynamic, false, false},
    {"embed", ShapedType::kDynamic, false, false, true},
};

/// Emits the body of one function: the model from token ids to logits.
class FunctionBuilder {
public:
  FunctionBuilder(OpBuilder &builder, const ModelConfig &config,
                  const Checkpoint *checkpoint, Type activationType)
      : b(builder), config(config), checkpoint(checkpoint), act(activationType),
        residual(builder.getF32Type()), loc(builder.getUnknownLoc()) {}

  void build(func::FuncOp func, const FunctionShape &shape) {
    Block *entry = func.addEntryBlock();
    b.setInsertionPointToStart(entry);
    Value ids = entry->getArgument(0);
    positions = entry->getArgument(1);
    rows = shape.rows;

    Value hidden = EmbeddingOp::create(b, loc, residualMatrix(), ids,
                                       weight("model.embed_tokens.weight"));
    for (int64_t layer = 0; layer < config.numLayers; ++layer)
      hidden = decoderLayer(hidden, layer);
    int64_t logitRows = shape.lastRowOnly ? 1 : rows;
    if (logitRows != rows)
      hidden = TakeLastOp::create(
          b, loc, RankedTensorType::get({1, config.hiddenSize}, residual),
          hidden);
    if (shape.hiddenStates) {
      Value states = RmsNormOp::create(
          b, loc, cast<RankedTensorType>(hidden.getType()), hidden,
          weight("model.norm.weight"), b.getF64FloatAttr(config.rmsNormEps));
      func::ReturnOp::create(b, loc, states);
      return;
    }
    Value normed = rmsNorm(hidden, "model.norm.weight");
    bool hasHead = checkpoint ? checkpoint->find("lm_head.weight") != nullptr
                              : !config.tieWordEmbeddings;
    std::string head = hasHead ? "lm_head.weight" : "model.embed_tokens.weight";
    Value logits = LinearOp::create(
        b, loc,
        RankedTensorType::get({logitRows, config.vocabSize}, b.getF32Type()),
        normed, weight(head), Value());
    func::ReturnOp::create(b, loc, logits);
  }

private:
  RankedTensorType matrix(int64_t cols) {
    return RankedTensorType::get({rows, cols}, act);
  }
  RankedTensorType residualMatrix() {
    return RankedTensorType::get({rows, config.hiddenSize}, residual);
  }

  Value weight(const std::string &name) {
    RankedTensorType type;
    if (checkpoint) {
      const TensorInfo *info = checkpoint->find(name);
      type = RankedTensorType::get(info->shape,
                                   elementType(*b.getContext(), info->dtype));
    } else {
      type = RankedTensorType::get(shapeOf(name), act);
    }
    return WeightOp::create(b, loc, type, name);
  }

  std::vector<int64_t> shapeOf(const std::string &name) {
    for (const RequiredTensor &tensor : requiredTensors(config))
      if (tensor.name == name)
        return tensor.shape;
    return {};
  }

  /// Normalised rows come out in the activation type, whatever the input's.
  Value rmsNorm(Value input, const std::string &weightName) {
    auto type = cast<RankedTensorType>(input.getType()).clone(act);
    return RmsNormOp::create(b, loc, type, input, weight(weightName),
                             b.getF64FloatAttr(config.rmsNormEps));
  }

  Value linear(Value input, const std::string &prefix, int64_t outFeatures,
               bool bias) {
    Value biasValue = bias ? weight(prefix + ".bias") : Value();
    return LinearOp::create(b, loc, matrix(outFeatures), input,
                            weight(prefix + ".weight"), biasValue);
  }

  Value rope(Value input) {
    auto op = RopeOp::create(b, loc, input.getType(), input, positions,
                             b.getI64IntegerAttr(config.headDim),
                             b.getF64FloatAttr(config.ropeTheta), FloatAttr(),
                             FloatAttr(), FloatAttr(), IntegerAttr());
    if (const auto &scaling = config.llama3Scaling) {
      op.setLlama3FactorAttr(b.getF64FloatAttr(scaling->factor));
      op.setLlama3LowFreqFactorAttr(b.getF64FloatAttr(scaling->lowFreqFactor));
      op.setLlama3HighFreqFactorAttr(
          b.getF64FloatAttr(scaling->highFreqFactor));
      op.setLlama3OriginalMaxPositionAttr(
          b.getI64IntegerAttr(scaling->originalMaxPositionEmbeddings));
    }
    return op;
  }

  Value decoderLayer(Value hidden, int64_t layer) {
    std::string prefix = absl::StrCat("model.layers.", layer, ".");
    std::string attn = prefix + "self_attn.";
    int64_t qWidth = config.numHeads * config.headDim;
    int64_t kvWidth = config.numKvHeads * config.headDim;

    Value normed = rmsNorm(hidden, prefix + "input_layernorm.weight");
    Value q = linear(normed, attn + "q_proj", qWidth, config.attentionBias);
    Value k = linear(normed, attn + "k_proj", kvWidth, config.attentionBias);
    Value v = linear(normed, attn + "v_proj", kvWidth, config.attentionBias);
    if (config.qkNorm) {
      q = rmsNorm(q, attn + "q_norm.weight");
      k = rmsNorm(k, attn + "k_norm.weight");
    }
    q = rope(q);
    k = rope(k);
    auto cache = FlatSymbolRefAttr::get(b.getContext(), "kv");
    CacheWriteOp::create(b, loc, k, v, positions, cache,
                         b.getI64IntegerAttr(layer));
    Value attended = AttentionOp::create(
        b, loc, q.getType(), q, positions, cache, b.getI64IntegerAttr(layer),
        b.getI64IntegerAttr(config.numHeads),
        b.getI64IntegerAttr(config.numKvHeads),
        b.getI64IntegerAttr(config.headDim),
        b.getF64FloatAttr(1.0 / std::sqrt(double(config.headDim))));
    Value projected =
        linear(attended, attn + "o_proj", config.hiddenSize, false);
    hidden = AddOp::create(b, loc, residualMatrix(), hidden, projected);

    normed = rmsNorm(hidden, prefix + "post_attention_layernorm.weight");
    std::string mlp = prefix + "mlp.";
    Value gate =
        linear(normed, mlp + "gate_proj", config.intermediateSize, false);
    Value up = linear(normed, mlp + "up_proj", config.intermediateSize, false);
    Value activated = MulOp::create(b, loc, SiluOp::create(b, loc, gate), up);
    Value down = linear(activated, mlp + "down_proj", config.hiddenSize, false);
    return AddOp::create(b, loc, residualMatrix(), hidden, down);
  }

  OpBuilder &b;
  const ModelConfig &config;
  const Checkpoint *checkpoint;
  Type act;
  /// The residual stream (embedding and every residual add) stays in f32:
  /// 16-bit roundings there accumulate over the layers, and it costs only
  /// hidden_size x 4 bytes per token.
  Type residual;
  Location loc;
  Value positions;
  int64_t rows = 1;
};

DictionaryAttr weightEntry(Builder &b, const std::string &file, int64_t offset,
                           DType dtype, ArrayRef<int64_t> shape) {
  return b.getDictionaryAttr({
      b.getNamedAttr("file", b.getStringAttr(file)),
      b.getNamedAttr("offset", b.getI64IntegerAttr(offset)),
      b.getNamedAttr("dtype", b.getStringAttr(dtypeName(dtype))),
      b.getNamedAttr("shape", b.getDenseI64ArrayAttr(shape)),
  });
}

/// Where every tensor lives; shape-only builds record no file (offset -1).
DictionaryAttr weightMap(Builder &b, const ModelConfig &config,
                         const Checkpoint *checkpoint, DType act) {
  SmallVector<NamedAttribute> entries;
  if (checkpoint) {
    for (const auto &[name, info] : checkpoint->tensors())
      entries.push_back(b.getNamedAttr(
          name,
          weightEntry(b, std::filesystem::path(info.file).filename().string(),
                      info.fileOffset, info.dtype, info.shape)));
  } else {
    for (const RequiredTensor &tensor : requiredTensors(config))
      entries.push_back(b.getNamedAttr(
          tensor.name, weightEntry(b, "", -1, act, tensor.shape)));
  }
  return b.getDictionaryAttr(entries);
}

DictionaryAttr modelSummary(Builder &b, const ModelConfig &config) {
  return b.getDictionaryAttr({
      b.getNamedAttr("architecture",
                     b.getStringAttr(architectureName(config.architecture))),
      b.getNamedAttr("hidden_size", b.getI64IntegerAttr(config.hiddenSize)),
      b.getNamedAttr("num_layers", b.getI64IntegerAttr(config.numLayers)),
      b.getNamedAttr("num_heads", b.getI64IntegerAttr(config.numHeads)),
      b.getNamedAttr("num_kv_heads", b.getI64IntegerAttr(config.numKvHeads)),
      b.getNamedAttr("head_dim", b.getI64IntegerAttr(config.headDim)),
      b.getNamedAttr("intermediate_size",
                     b.getI64IntegerAttr(config.intermediateSize)),
      b.getNamedAttr("vocab_size", b.getI64IntegerAttr(config.vocabSize)),
      b.getNamedAttr("max_position_embeddings",
                     b.getI64IntegerAttr(config.maxPositionEmbeddings)),
  });
}
} // namespace

absl::StatusOr<OwningOpRef<ModuleOp>> buildModule(MLIRContext &context,
                                                  const ModelConfig &config,
                                                  const Checkpoint *checkpoint,
                                                  const BuildOptions &options) {
  // The config and checkpoint of a Qwen3.5 model are read and validated, but
  // the IR has no Gated DeltaNet ops yet: building its full-attention layers
  // alone would be a wrong model, so refuse (docs/qwen3_5.md says what the
  // missing ops must compute).
  if (config.architecture == Architecture::Qwen3_5)
    return absl::UnimplementedError(
        "Qwen3.5 (Qwen3_5ForConditionalGeneration / Qwen3_5ForCausalLM) "
        "cannot be compiled yet: its Gated DeltaNet (linear_attention) "
        "layers and gated attention have no treni IR ops (issue 18; "
        "docs/qwen3_5.md)");
  context.loadDialect<TreniDialect, func::FuncDialect>();
  DType actDtype =
      options.activationDtype.value_or(config.dtype.value_or(DType::BF16));
  if (checkpoint && !options.activationDtype && !config.dtype) {
    const TensorInfo *embedding = checkpoint->find("model.embed_tokens.weight");
    if (!embedding)
      return absl::InvalidArgumentError(absl::StrCat(
          checkpoint->dir(), ": missing tensor 'model.embed_tokens.weight'"));
    actDtype = embedding->dtype;
  }
  Type act = elementType(context, actDtype);

  OpBuilder b(&context);
  OwningOpRef<ModuleOp> module = ModuleOp::create(b.getUnknownLoc());
  (*module)->setAttr(kWeightsAttrName,
                     weightMap(b, config, checkpoint, actDtype));
  (*module)->setAttr("treni.model", modelSummary(b, config));
  b.setInsertionPointToEnd(module->getBody());
  KvCacheOp::create(b, b.getUnknownLoc(), "kv", config.numLayers,
                    config.numKvHeads, config.headDim, act);

  for (const FunctionShape &shape : kFunctions) {
    auto ids = RankedTensorType::get({shape.rows}, b.getI32Type());
    auto logits = RankedTensorType::get(
        {shape.lastRowOnly ? 1 : shape.rows,
         shape.hiddenStates ? config.hiddenSize : config.vocabSize},
        b.getF32Type());
    b.setInsertionPointToEnd(module->getBody());
    auto func = func::FuncOp::create(b, b.getUnknownLoc(), shape.name,
                                     b.getFunctionType({ids, ids}, {logits}));
    if (shape.oneSequence)
      func->setAttr(kOneSequenceAttrName, b.getUnitAttr());
    OpBuilder bodyBuilder(&context);
    FunctionBuilder(bodyBuilder, config, checkpoint, act).build(func, shape);
  }
  if (failed(verify(*module)))
    return absl::InternalError("the built module does not verify");
  return module;
}

absl::StatusOr<LoadedModel> loadModelDir(MLIRContext &context,
                                         const ModelDir &dir,
                                         const BuildOptions &options) {
  LoadedModel model;
  model.config = dir.config;
  if (absl::Status status = validateCheckpoint(model.config, *dir.checkpoint);
      !status.ok())
    return status;
  auto module =
      buildModule(context, model.config, dir.checkpoint.get(), options);
  if (!module.ok())
    return module.status();
  model.module = std::move(*module);
  return model;
}

} // namespace treni
