//===- AgentToolSignatures.cpp - tool signatures from IR, memory and JSON -===//
//
// The passes use the runtime's signature model (runtime/tools/tool_signature.h)
// and its one reader of the `treni.tools/1` format: signatures handed over in
// memory (a ToolRegistry's, through AgentPipelineOptions), a registry file
// (the passes' `registry=FILE` option, for treni-opt), and the module's
// `agent.tool_decl` ops, converted here.
//
//===----------------------------------------------------------------------===//

#include "passes/AgentPasses.h"

namespace agent {
using namespace mlir;

StringRef toolNamespace(StringRef toolName) {
  return toolName.split('.').first;
}

std::string valueTypeName(Type type) {
  if (std::optional<treni::ToolType> toolType = toolTypeOf(type))
    return std::string(treni::toolTypeName(*toolType));
  std::string text;
  llvm::raw_string_ostream os(text);
  os << type;
  return text;
}

std::optional<treni::ToolType> toolTypeOf(Type type) {
  if (isa<StringType>(type))
    return treni::ToolType::String;
  if (isa<JsonType>(type))
    return treni::ToolType::Json;
  if (type.isInteger(64))
    return treni::ToolType::Int;
  if (type.isF64())
    return treni::ToolType::Float;
  if (type.isInteger(1))
    return treni::ToolType::Bool;
  return std::nullopt;
}

bool acceptsToolType(treni::ToolType declared, Type actual) {
  std::optional<treni::ToolType> type = toolTypeOf(actual);
  if (declared == treni::ToolType::Json || type == declared)
    return true;
  return declared == treni::ToolType::Float && type == treni::ToolType::Int;
}

namespace {
/// The signature an `agent.tool_decl` declares.
FailureOr<treni::ToolSignature> signatureOf(ToolDeclOp decl) {
  treni::ToolSignature signature;
  signature.name = decl.getTool().str();
  signature.readOnly = decl.getReadonly();
  llvm::SmallVector<StringRef> optional;
  if (auto list = decl.getOptional())
    for (Attribute name : *list)
      optional.push_back(cast<StringAttr>(name).getValue());
  for (NamedAttribute param : decl.getParams()) {
    Type type = cast<TypeAttr>(param.getValue()).getValue();
    std::optional<treni::ToolType> toolType = toolTypeOf(type);
    if (!toolType)
      return decl.emitOpError() << "parameter '" << param.getName().getValue()
                                << "' has no tool type: " << type;
    treni::ToolParameter parameter;
    parameter.name = param.getName().str();
    parameter.type = *toolType;
    parameter.required =
        !llvm::is_contained(optional, param.getName().getValue());
    signature.parameters.push_back(std::move(parameter));
  }
  return signature;
}
} // namespace

FailureOr<std::map<std::string, treni::ToolSignature>>
collectToolSignatures(ModuleOp module, StringRef registryFile,
                      const ToolSignatureList &given) {
  std::map<std::string, treni::ToolSignature> signatures;
  if (given)
    for (const treni::ToolSignature &signature : *given)
      signatures[signature.name] = signature;
  if (!registryFile.empty()) {
    absl::StatusOr<std::vector<treni::ToolSignature>> fromFile =
        treni::readToolSignaturesFile(registryFile.str());
    if (!fromFile.ok())
      return module.emitError(std::string(fromFile.status().message())),
             failure();
    for (treni::ToolSignature &signature : *fromFile) {
      std::string name = signature.name;
      signatures[name] = std::move(signature);
    }
  }
  for (auto decl : module.getOps<ToolDeclOp>()) {
    FailureOr<treni::ToolSignature> signature = signatureOf(decl);
    if (failed(signature))
      return failure();
    signatures[signature->name] = std::move(*signature);
  }
  return signatures;
}

} // namespace agent
