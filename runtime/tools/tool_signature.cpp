//===- tool_signature.cpp - declared tool signatures and validation -------===//

#include "runtime/tools/tool_signature.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/tools/tool_context.h"
#include "support/file.h"
#include "support/json_bounded.h"

namespace treni {

namespace {

/// "string \"abc\"", "number 3.5", "object {...}": what a value was, short.
std::string describeValue(const nlohmann::json &value) {
  std::string text = dumpJson(value);
  if (text.size() > 40)
    text = text.substr(0, 37) + "...";
  return absl::StrCat(value.type_name(), " ", text);
}

std::string_view article(ToolType type) {
  return type == ToolType::Int ? "an" : "a";
}

absl::Status fieldError(std::string_view tool, std::string_view message) {
  if (tool.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("tool signature: ", toAbsl(message)));
  return absl::InvalidArgumentError(
      absl::StrCat("tool signature '", toAbsl(tool), "': ", toAbsl(message)));
}

} // namespace

std::string_view toolTypeName(ToolType type) {
  switch (type) {
  case ToolType::String:
    return "string";
  case ToolType::Int:
    return "int";
  case ToolType::Float:
    return "float";
  case ToolType::Bool:
    return "bool";
  case ToolType::Json:
    return "json";
  }
  return "json";
}

absl::StatusOr<ToolType> parseToolType(std::string_view name) {
  for (ToolType type : {ToolType::String, ToolType::Int, ToolType::Float,
                        ToolType::Bool, ToolType::Json})
    if (toolTypeName(type) == name)
      return type;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tool type '", toAbsl(name),
                   "' (expected string, int, float, bool or json)"));
}

bool matchesToolType(const nlohmann::json &value, ToolType type) {
  switch (type) {
  case ToolType::String:
    return value.is_string();
  case ToolType::Int:
    return value.is_number_integer();
  case ToolType::Float:
    return value.is_number();
  case ToolType::Bool:
    return value.is_boolean();
  case ToolType::Json:
    return true;
  }
  return false;
}

bool isValidToolName(std::string_view name) {
  if (name.empty() || name.size() > 64)
    return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              (i > 0 && (c == '.' || c == '-'));
    if (!ok)
      return false;
  }
  return true;
}

std::string openAiToolName(std::string_view name) {
  std::string result(name);
  for (char &c : result)
    if (c == '.')
      c = '_';
  return result;
}

const ToolParameter *ToolSignature::parameter(std::string_view name) const {
  for (const ToolParameter &param : parameters)
    if (param.name == name)
      return &param;
  return nullptr;
}

absl::Status validateSignature(const ToolSignature &signature) {
  if (!isValidToolName(signature.name))
    return fieldError(signature.name,
                      absl::StrCat("invalid tool name '", signature.name,
                                   "' (expected [a-z0-9_][a-z0-9_.-]*, at "
                                   "most 64 characters)"));
  std::set<std::string> seen;
  for (const ToolParameter &param : signature.parameters) {
    if (param.name.empty())
      return fieldError(signature.name, "a parameter has an empty name");
    if (!seen.insert(param.name).second)
      return fieldError(signature.name, absl::StrCat("parameter '", param.name,
                                                     "' is declared twice"));
    if (param.defaultValue) {
      if (param.required)
        return fieldError(signature.name,
                          absl::StrCat("required parameter '", param.name,
                                       "' cannot have a default"));
      if (!matchesToolType(*param.defaultValue, param.type))
        return fieldError(
            signature.name,
            absl::StrCat("default of parameter '", param.name, "' must be ",
                         toAbsl(article(param.type)), " ",
                         toAbsl(toolTypeName(param.type)), ", got ",
                         describeValue(*param.defaultValue)));
    }
  }
  return absl::OkStatus();
}

nlohmann::json ToolSignature::toJson() const {
  nlohmann::json params = nlohmann::json::array();
  for (const ToolParameter &param : parameters) {
    nlohmann::json entry = {{"name", param.name},
                            {"type", toolTypeName(param.type)},
                            {"required", param.required},
                            {"description", param.description}};
    if (param.defaultValue)
      entry["default"] = *param.defaultValue;
    params.push_back(std::move(entry));
  }
  return {{"name", name},
          {"description", description},
          {"readonly", readOnly},
          {"parameters", std::move(params)},
          {"result",
           {{"type", toolTypeName(resultType)},
            {"description", resultDescription}}}};
}

absl::StatusOr<ToolSignature>
ToolSignature::fromJson(const nlohmann::json &json) {
  if (!json.is_object())
    return fieldError(
        "", absl::StrCat("expected an object, got ", describeValue(json)));
  ToolSignature signature;
  auto name = json.find("name");
  if (name == json.end() || !name->is_string())
    return fieldError("", "\"name\" must be a string");
  signature.name = name->get<std::string>();
  auto stringField = [&](const nlohmann::json &object, std::string_view key,
                         std::string &out) -> absl::Status {
    auto it = object.find(key);
    if (it == object.end() || it->is_null())
      return absl::OkStatus();
    if (!it->is_string())
      return fieldError(signature.name,
                        absl::StrCat("\"", toAbsl(key), "\" must be a string"));
    out = it->get<std::string>();
    return absl::OkStatus();
  };
  if (absl::Status s = stringField(json, "description", signature.description);
      !s.ok())
    return s;
  if (auto params = json.find("parameters"); params != json.end()) {
    if (!params->is_array())
      return fieldError(signature.name, "\"parameters\" must be an array");
    for (const nlohmann::json &entry : *params) {
      if (!entry.is_object())
        return fieldError(signature.name, "each parameter must be an object");
      ToolParameter param;
      auto paramName = entry.find("name");
      if (paramName == entry.end() || !paramName->is_string())
        return fieldError(signature.name,
                          "a parameter's \"name\" must be a string");
      param.name = paramName->get<std::string>();
      auto type = entry.find("type");
      if (type == entry.end() || !type->is_string())
        return fieldError(signature.name,
                          absl::StrCat("parameter '", param.name,
                                       "': \"type\" must be a string"));
      absl::StatusOr<ToolType> parsed = parseToolType(type->get<std::string>());
      if (!parsed.ok())
        return fieldError(signature.name,
                          absl::StrCat("parameter '", param.name,
                                       "': ", parsed.status().message()));
      param.type = *parsed;
      if (auto required = entry.find("required"); required != entry.end()) {
        if (!required->is_boolean())
          return fieldError(signature.name,
                            absl::StrCat("parameter '", param.name,
                                         "': \"required\" must be a bool"));
        param.required = required->get<bool>();
      }
      if (absl::Status s = stringField(entry, "description", param.description);
          !s.ok())
        return s;
      if (auto def = entry.find("default"); def != entry.end())
        param.defaultValue = *def;
      signature.parameters.push_back(std::move(param));
    }
  }
  if (auto readOnly = json.find("readonly"); readOnly != json.end()) {
    if (!readOnly->is_boolean())
      return fieldError(signature.name, "\"readonly\" must be a bool");
    signature.readOnly = readOnly->get<bool>();
  }
  if (auto result = json.find("result"); result != json.end()) {
    if (!result->is_object())
      return fieldError(signature.name, "\"result\" must be an object");
    if (auto type = result->find("type"); type != result->end()) {
      if (!type->is_string())
        return fieldError(signature.name,
                          "\"result\".\"type\" must be a string");
      absl::StatusOr<ToolType> parsed = parseToolType(type->get<std::string>());
      if (!parsed.ok())
        return fieldError(signature.name,
                          absl::StrCat("result: ", parsed.status().message()));
      signature.resultType = *parsed;
    }
    if (absl::Status s =
            stringField(*result, "description", signature.resultDescription);
        !s.ok())
      return s;
  }
  if (absl::Status s = validateSignature(signature); !s.ok())
    return s;
  return signature;
}

nlohmann::json ToolSignature::toOpenAiTool() const {
  nlohmann::json properties = nlohmann::json::object();
  nlohmann::json required = nlohmann::json::array();
  for (const ToolParameter &param : parameters) {
    nlohmann::json schema = nlohmann::json::object();
    switch (param.type) {
    case ToolType::String:
      schema["type"] = "string";
      break;
    case ToolType::Int:
      schema["type"] = "integer";
      break;
    case ToolType::Float:
      schema["type"] = "number";
      break;
    case ToolType::Bool:
      schema["type"] = "boolean";
      break;
    case ToolType::Json:
      break; // any value
    }
    if (!param.description.empty())
      schema["description"] = param.description;
    if (param.defaultValue)
      schema["default"] = *param.defaultValue;
    properties[param.name] = std::move(schema);
    if (param.required)
      required.push_back(param.name);
  }
  return {{"type", "function"},
          {"function",
           {{"name", openAiToolName(name)},
            {"description", description},
            {"parameters",
             {{"type", "object"},
              {"properties", std::move(properties)},
              {"required", std::move(required)},
              {"additionalProperties", false}}}}}};
}

absl::StatusOr<nlohmann::json>
validateToolArguments(const ToolSignature &signature,
                      const nlohmann::json &args) {
  auto error = [&](std::string_view message) {
    return absl::InvalidArgumentError(
        absl::StrCat("tool '", signature.name, "': ", toAbsl(message)));
  };
  nlohmann::json result = nlohmann::json::object();
  if (args.is_null()) {
    // No arguments at all: same as {}.
  } else if (!args.is_object()) {
    return error(absl::StrCat("arguments must be a JSON object, got ",
                              describeValue(args)));
  } else {
    for (auto it = args.begin(); it != args.end(); ++it) {
      if (signature.parameter(it.key()) != nullptr)
        continue;
      std::vector<std::string> names;
      for (const ToolParameter &param : signature.parameters)
        names.push_back(param.name);
      return error(absl::StrCat(
          "unknown argument '", it.key(), "' (expected ",
          names.empty() ? std::string("no arguments")
                        : absl::StrCat("one of: ", absl::StrJoin(names, ", ")),
          ")"));
    }
    result = args;
  }
  for (const ToolParameter &param : signature.parameters) {
    auto it = result.find(param.name);
    // An explicit null for an optional argument means "not given" (models
    // write that), except where null is a value of the type (json).
    if (it != result.end() && it->is_null() && !param.required &&
        param.type != ToolType::Json) {
      result.erase(it);
      it = result.end();
    }
    if (it == result.end()) {
      if (param.required)
        return error(absl::StrCat("missing required argument '", param.name,
                                  "' (", toAbsl(toolTypeName(param.type)),
                                  ")"));
      if (param.defaultValue)
        result[param.name] = *param.defaultValue;
      continue;
    }
    if (!matchesToolType(*it, param.type))
      return error(absl::StrCat(
          "argument '", param.name, "' must be ", toAbsl(article(param.type)),
          " ", toAbsl(toolTypeName(param.type)), ", got ", describeValue(*it)));
  }
  return result;
}

//===----------------------------------------------------------------------===//
// treni.tools/1 documents
//===----------------------------------------------------------------------===//

absl::StatusOr<std::vector<ToolSignature>>
parseToolSignatures(const nlohmann::json &document) {
  auto tools = document.is_object() ? document.find("tools") : document.end();
  if (!document.is_object() || tools == document.end() || !tools->is_array())
    return absl::InvalidArgumentError(
        "expected an object with a \"tools\" array");
  if (auto format = document.find("format"); format != document.end()) {
    if (!format->is_string() ||
        format->get<std::string>() != kToolSignaturesFormat)
      return absl::InvalidArgumentError(
          absl::StrCat("format is ", describeValue(*format), ", expected '",
                       toAbsl(kToolSignaturesFormat), "'"));
  }
  std::vector<ToolSignature> signatures;
  signatures.reserve(tools->size());
  for (size_t i = 0; i < tools->size(); ++i) {
    absl::StatusOr<ToolSignature> signature =
        ToolSignature::fromJson((*tools)[i]);
    if (!signature.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("tools[", i, "]: ", signature.status().message()));
    signatures.push_back(std::move(*signature));
  }
  return signatures;
}

absl::StatusOr<std::vector<ToolSignature>>
readToolSignaturesFile(const std::string &path) {
  absl::StatusOr<std::string> text = readRegularFile(path, size_t{64} << 20);
  if (!text.ok())
    return absl::Status(text.status().code(),
                        absl::StrCat("cannot read tool registry '", path,
                                     "': ", text.status().message()));
  absl::StatusOr<nlohmann::json> document = parseJsonBounded(*text);
  absl::StatusOr<std::vector<ToolSignature>> signatures =
      document.ok()
          ? parseToolSignatures(*document)
          : absl::StatusOr<std::vector<ToolSignature>>(document.status());
  if (!signatures.ok())
    return absl::Status(signatures.status().code(),
                        absl::StrCat("tool registry '", path,
                                     "': ", signatures.status().message()));
  return signatures;
}

} // namespace treni
