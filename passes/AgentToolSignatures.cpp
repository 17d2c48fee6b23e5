//===- AgentToolSignatures.cpp - tool signatures from IR and JSON --------===//
//
// The registry file is the tool registry's export (runtime/tools/tool_signature.h):
//   {"format": "treni.tools/1",
//    "tools": [{"name": "sqlite.query", "readonly": true,
//               "parameters": [{"name": "sql", "type": "string",
//                               "required": true}, ...]}, ...]}
// Keys this pass does not need (descriptions, defaults, result) are ignored.
//
//===----------------------------------------------------------------------===//

#include "passes/AgentPasses.h"

#include "mlir/IR/Builders.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

namespace agent {
using namespace mlir;

const ToolParamSignature *ToolSignature::param(StringRef paramName) const {
  for (const ToolParamSignature &p : params)
    if (p.name == paramName)
      return &p;
  return nullptr;
}

StringRef toolNamespace(StringRef toolName) {
  return toolName.split('.').first;
}

std::string valueTypeName(Type type) {
  if (isa<StringType>(type))
    return "string";
  if (isa<JsonType>(type))
    return "json";
  if (type.isInteger(64))
    return "int";
  if (type.isF64())
    return "float";
  if (type.isInteger(1))
    return "bool";
  std::string text;
  llvm::raw_string_ostream os(text);
  os << type;
  return text;
}

namespace {
Type typeFromName(MLIRContext *context, StringRef name) {
  Builder b(context);
  if (name == "string")
    return StringType::get(context);
  if (name == "json")
    return JsonType::get(context);
  if (name == "int")
    return b.getI64Type();
  if (name == "float")
    return b.getF64Type();
  if (name == "bool")
    return b.getI1Type();
  return Type();
}

/// Reads the registry file; errors are returned as text naming the file and
/// the offending entry.
FailureOr<std::vector<ToolSignature>>
readRegistry(MLIRContext *context, StringRef file, std::string &error) {
  auto buffer = llvm::MemoryBuffer::getFile(file, /*IsText=*/true);
  if (!buffer) {
    error = "cannot read tool registry '" + file.str() +
            "': " + buffer.getError().message();
    return failure();
  }
  llvm::Expected<llvm::json::Value> json =
      llvm::json::parse((*buffer)->getBuffer());
  if (!json) {
    error = "tool registry '" + file.str() +
            "' is not JSON: " + llvm::toString(json.takeError());
    return failure();
  }
  const llvm::json::Object *root = json->getAsObject();
  const llvm::json::Array *tools = root ? root->getArray("tools") : nullptr;
  if (!tools) {
    error = "tool registry '" + file.str() +
            "' needs an object with a \"tools\" array";
    return failure();
  }
  if (auto format = root->getString("format");
      format && *format != "treni.tools/1") {
    error = "tool registry '" + file.str() + "' has format '" + format->str() +
            "', expected 'treni.tools/1'";
    return failure();
  }
  std::vector<ToolSignature> signatures;
  for (auto [index, entry] : llvm::enumerate(*tools)) {
    std::string where = "tool registry '" + file.str() + "', tools[" +
                        std::to_string(index) + "]";
    const llvm::json::Object *tool = entry.getAsObject();
    auto name = tool ? tool->getString("name") : std::nullopt;
    if (!name || name->empty()) {
      error = where + ": needs a \"name\" string";
      return failure();
    }
    ToolSignature signature;
    signature.name = name->str();
    signature.origin = "tool registry '" + file.str() + "'";
    signature.readonly = tool->getBoolean("readonly").value_or(false);
    if (const llvm::json::Value *params = tool->get("parameters")) {
      const llvm::json::Array *list = params->getAsArray();
      if (!list) {
        error = where + " ('" + signature.name +
                "'): \"parameters\" must be an array";
        return failure();
      }
      for (auto [p, paramValue] : llvm::enumerate(*list)) {
        const llvm::json::Object *param = paramValue.getAsObject();
        auto paramName = param ? param->getString("name") : std::nullopt;
        auto typeName = param ? param->getString("type") : std::nullopt;
        Type type = typeName ? typeFromName(context, *typeName) : Type();
        if (!paramName || paramName->empty() || !type) {
          error = where + " ('" + signature.name + "'), parameters[" +
                  std::to_string(p) +
                  "]: needs a \"name\" and a \"type\" (string, int, float, "
                  "bool, json)";
          return failure();
        }
        signature.params.push_back(
            {paramName->str(), type,
             !param->getBoolean("required").value_or(true)});
      }
    }
    signatures.push_back(std::move(signature));
  }
  return signatures;
}
} // namespace

FailureOr<std::map<std::string, ToolSignature>>
collectToolSignatures(ModuleOp module, StringRef registryFile) {
  std::map<std::string, ToolSignature> signatures;
  if (!registryFile.empty()) {
    std::string error;
    auto fromFile = readRegistry(module.getContext(), registryFile, error);
    if (failed(fromFile))
      return module.emitError(error), failure();
    for (ToolSignature &signature : *fromFile) {
      std::string name = signature.name;
      signatures[name] = std::move(signature);
    }
  }
  for (auto decl : module.getOps<ToolDeclOp>()) {
    ToolSignature signature;
    signature.name = decl.getTool().str();
    signature.readonly = decl.getReadonly();
    signature.origin = "agent.tool_decl";
    llvm::SmallVector<StringRef> optional;
    if (auto list = decl.getOptional())
      for (Attribute name : *list)
        optional.push_back(cast<StringAttr>(name).getValue());
    for (NamedAttribute param : decl.getParams())
      signature.params.push_back(
          {param.getName().str(), cast<TypeAttr>(param.getValue()).getValue(),
           llvm::is_contained(optional, param.getName().getValue())});
    signatures[signature.name] = std::move(signature);
  }
  return signatures;
}

} // namespace agent
