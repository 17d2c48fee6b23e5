//===- chat_template.cpp - a checkpoint's own chat template ---------------===//
//
// What transformers' apply_chat_template(..., tokenize=False) does: picks the
// template (a named "tool_use" one when tools are given and it exists, else
// "default"), then renders it with messages, tools, documents (None),
// add_generation_prompt, the special tokens the config names, and the extra
// variables.
//
//===----------------------------------------------------------------------===//

#include "runtime/text/chat_template.h"

#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "runtime/text/jinja.h"
#include "support/file.h"
#include "support/json_bounded.h"

namespace treni {

struct ChatTemplate::Impl {
  std::unique_ptr<jinja::Template> defaultTemplate;
  std::unique_ptr<jinja::Template> toolUseTemplate;
  /// Special tokens the config defines (bos_token, eos_token, unk_token,
  /// pad_token), as template variables.
  std::map<std::string, std::string> specialTokens;
  std::string bosToken;
  std::string eosToken;
  std::string source;
};

namespace {

/// tokenizer_config.json or a template file: real ones are a few hundred KB.
absl::StatusOr<std::string> readFile(const std::string &path) {
  return readRegularFile(path, size_t{64} << 20);
}

/// A special token given as a string or as an AddedToken dict {"content": ...}.
absl::StatusOr<std::optional<std::string>>
tokenContent(const nlohmann::json &config, const char *key,
             const std::string &path) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null())
    return std::optional<std::string>();
  if (it->is_string())
    return std::optional<std::string>(it->get<std::string>());
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string())
      return std::optional<std::string>(content->get<std::string>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": ", key,
                   " must be a string or an object with a string \"content\""));
}

absl::StatusOr<std::unique_ptr<jinja::Template>>
compile(const std::string &source, const std::string &what) {
  absl::StatusOr<std::unique_ptr<jinja::Template>> t =
      jinja::Template::parse(source);
  if (!t.ok())
    return absl::Status(t.status().code(),
                        absl::StrCat(what, ": ", t.status().message()));
  return t;
}

} // namespace

ChatTemplate::ChatTemplate(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
ChatTemplate::~ChatTemplate() = default;

absl::StatusOr<std::unique_ptr<ChatTemplate>>
ChatTemplate::fromTokenizerConfig(const std::string &path) {
  absl::StatusOr<std::string> text = readFile(path);
  if (!text.ok())
    return text.status();
  absl::StatusOr<nlohmann::json> parsed = parseJsonBounded(*text);
  if (!parsed.ok())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a JSON object: ", parsed.status().message()));
  const nlohmann::json &config = *parsed;
  if (!config.is_object())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a JSON object"));

  auto impl = std::make_unique<Impl>();
  for (const char *key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    absl::StatusOr<std::optional<std::string>> token =
        tokenContent(config, key, path);
    if (!token.ok())
      return token.status();
    if (*token)
      impl->specialTokens[key] = **token;
  }
  impl->bosToken = impl->specialTokens.count("bos_token")
                       ? impl->specialTokens["bos_token"]
                       : "";
  impl->eosToken = impl->specialTokens.count("eos_token")
                       ? impl->specialTokens["eos_token"]
                       : "";

  auto field = config.find("chat_template");
  if (field == config.end() || field->is_null()) {
    // Newer checkpoints keep it next to the config, in chat_template.jinja.
    std::string dir = path.substr(0, path.find_last_of('/') + 1);
    absl::StatusOr<std::string> jinjaFile =
        readFile(dir + "chat_template.jinja");
    if (!jinjaFile.ok())
      return absl::NotFoundError(absl::StrCat(
          path, ": no chat_template (and no chat_template.jinja beside it)"));
    absl::StatusOr<std::unique_ptr<jinja::Template>> t =
        compile(*jinjaFile, dir + "chat_template.jinja");
    if (!t.ok())
      return t.status();
    impl->source = *jinjaFile;
    impl->defaultTemplate = std::move(*t);
  } else if (field->is_string()) {
    absl::StatusOr<std::unique_ptr<jinja::Template>> t =
        compile(field->get<std::string>(), path + ": chat_template");
    if (!t.ok())
      return t.status();
    impl->source = field->get<std::string>();
    impl->defaultTemplate = std::move(*t);
  } else if (field->is_array()) {
    for (const nlohmann::json &entry : *field) {
      if (!entry.is_object() || !entry.contains("name") ||
          !entry["name"].is_string() || !entry.contains("template") ||
          !entry["template"].is_string())
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": chat_template list entries must be "
                               "{\"name\": string, \"template\": string}"));
      std::string name = entry["name"].get<std::string>();
      if (name != "default" && name != "tool_use")
        continue;
      absl::StatusOr<std::unique_ptr<jinja::Template>> t =
          compile(entry["template"].get<std::string>(),
                  absl::StrCat(path, ": chat_template '", name, "'"));
      if (!t.ok())
        return t.status();
      (name == "default" ? impl->defaultTemplate : impl->toolUseTemplate) =
          std::move(*t);
      if (name == "default" || impl->source.empty())
        impl->source = entry["template"].get<std::string>();
    }
    if (!impl->defaultTemplate && !impl->toolUseTemplate)
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": chat_template list has neither a 'default' nor "
                             "a 'tool_use' entry"));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": chat_template must be a string or a list of named templates"));
  }
  return std::unique_ptr<ChatTemplate>(new ChatTemplate(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<ChatTemplate>>
ChatTemplate::fromSource(std::string source, std::string bosToken,
                         std::string eosToken) {
  auto impl = std::make_unique<Impl>();
  absl::StatusOr<std::unique_ptr<jinja::Template>> t =
      compile(source, "chat_template");
  if (!t.ok())
    return t.status();
  impl->defaultTemplate = std::move(*t);
  impl->source = std::move(source);
  if (!bosToken.empty())
    impl->specialTokens["bos_token"] = bosToken;
  if (!eosToken.empty())
    impl->specialTokens["eos_token"] = eosToken;
  impl->bosToken = std::move(bosToken);
  impl->eosToken = std::move(eosToken);
  return std::unique_ptr<ChatTemplate>(new ChatTemplate(std::move(impl)));
}

absl::StatusOr<std::string>
ChatTemplate::render(const nlohmann::json &messages,
                     const ChatTemplateOptions &options) const {
  return render(nlohmann::ordered_json(messages), options);
}

absl::StatusOr<std::string>
ChatTemplate::render(const nlohmann::ordered_json &messages,
                     const ChatTemplateOptions &options) const {
  if (!messages.is_array())
    return absl::InvalidArgumentError("messages must be a JSON array");
  if (!options.tools.is_null() && !options.tools.is_array())
    return absl::InvalidArgumentError("tools must be a JSON array or null");
  if (!options.extra.is_null() && !options.extra.is_object())
    return absl::InvalidArgumentError(
        "extra template variables must be a JSON object");

  // transformers: the "tool_use" template when tools are passed and it
  // exists, else "default".
  const jinja::Template *t = impl_->defaultTemplate.get();
  if ((!options.tools.is_null() && impl_->toolUseTemplate) || !t)
    t = impl_->toolUseTemplate.get();
  if (!t)
    return absl::FailedPreconditionError(
        "this model's chat templates have no 'default'");

  std::map<std::string, jinja::Value> variables;
  for (const auto &[name, token] : impl_->specialTokens)
    variables[name] = jinja::Value::string(token);
  if (options.extra.is_object()) {
    for (auto it = options.extra.begin(); it != options.extra.end(); ++it) {
      const std::string &key = it.key();
      if (key == "messages" || key == "tools" || key == "documents" ||
          key == "add_generation_prompt")
        return absl::InvalidArgumentError(
            absl::StrCat("extra template variable '", key,
                         "' would replace a standard one"));
      variables[key] = jinja::Value::fromJson(it.value());
    }
  }
  variables["messages"] = jinja::Value::fromJson(messages);
  variables["tools"] = jinja::Value::fromJson(options.tools);
  variables["documents"] = jinja::Value::none();
  variables["add_generation_prompt"] =
      jinja::Value::boolean(options.addGenerationPrompt);
  return t->render(variables);
}

const std::string &ChatTemplate::source() const { return impl_->source; }
const std::string &ChatTemplate::bosToken() const { return impl_->bosToken; }
const std::string &ChatTemplate::eosToken() const { return impl_->eosToken; }

} // namespace treni
