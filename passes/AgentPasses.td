//===- AgentPasses.td - passes over the agent dialect ------*- tablegen -*-===//
#ifndef AGENT_PASSES_TD
#define AGENT_PASSES_TD

include "mlir/Pass/PassBase.td"

def AgentVerifyToolsPass : Pass<"agent-verify-tools", "mlir::ModuleOp"> {
  let summary = "Check every tool call against the declared tool signatures";
  let description = [{
    Signatures come from the module's `agent.tool_decl` ops (the `.agent`
    file's `extern tool` declarations), from a driver in memory (a tool
    registry's signatures, `createAgentVerifyToolsPass(signatures)`) and,
    with `registry=FILE`, from a JSON file in the tool registry's export
    format (`"format": "treni.tools/1"`, a `tools` array of signatures with
    `name`, `parameters` (each with `name`, `type`, `required`) and
    optionally `readonly`; read by the runtime's one reader of the format,
    `treni::readToolSignaturesFile`); a module declaration wins over the
    others.

    Each `agent.tool` must name a declared tool, give every required
    argument, give no argument the tool does not take, and pass values of
    the declared types (an `i64` may go where a float is declared; anything
    may go where `json` is). Every mismatch is a diagnostic at the call:

    ```mlir
    agent.tool_decl "sqlite.query" {params = {sql = !agent.string}}
    ...
    %r = agent.tool "sqlite.query"(%n : i64) {arg_names = ["sql"], step = "r"}
    // error: argument 'sql' of tool 'sqlite.query' must be a string, got an int
    ```

    Why: a misspelt tool or argument otherwise surfaces only when the
    workflow reaches that step at run time, after model calls were paid for.
  }];
  let options = [
    Option<"registry", "registry", "std::string", /*default=*/"\"\"",
           "JSON file of tool signatures (treni.tools/1)">,
  ];
  let dependentDialects = ["::agent::AgentDialect"];
}

def AgentHoistToolsPass : Pass<"agent-hoist-tools", "mlir::ModuleOp"> {
  let summary = "Group independent tool calls and generations into agent.parallel so they run concurrently";
  let description = [{
    Within a block, a tool call or a generate joins an earlier one's group
    when it can move up to it without changing what the workflow computes:
    its operands are available there (pure computations of them move up
    with it; a `generate`, `tool`, `retry` or `if` result it needs keeps it
    in place), it does not use the result of a member of the group, nothing
    it crosses or runs beside touches the same tool namespace (`sqlite` of
    `sqlite.query`) unless both are `readonly` (from `agent.tool_decl`, the
    signatures a driver hands over, or the `registry` file; a generation
    touches no tool's state), and it crosses no `agent.if` / `agent.retry`
    that may return (the call must not run when the workflow would have
    ended). Each group of two or more becomes one `agent.parallel` at the
    first call's place.

    Before:
    ```mlir
    %a = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = ["sql"], step = "a"}
    %g = agent.generate %p {step = "g"}
    %t = agent.text %a : !agent.tool_result
    %h = agent.generate %t {step = "h"}
    %b = agent.tool "http.get"(%url : !agent.string) {arg_names = ["url"], step = "b"}
    ```
    After (`h` needs `a`'s result, so it stays):
    ```mlir
    %r:3 = agent.parallel -> (!agent.tool_result, !agent.generation, !agent.tool_result) {
      %a = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = ["sql"], step = "a"}
      %g = agent.generate %p {step = "g"}
      %b = agent.tool "http.get"(%url : !agent.string) {arg_names = ["url"], step = "b"}
      agent.yield %a, %g, %b : !agent.tool_result, !agent.generation, !agent.tool_result
    }
    %t = agent.text %r#0 : !agent.tool_result
    %h = agent.generate %t {step = "h"}
    ```

    Why: tool latency (a query, an HTTP fetch, a subprocess) adds up step
    by step when the calls run one after another; independent calls cost
    only the slowest of them together, and they start before model steps
    that do not need them. Independent generations of one workflow decode
    in the same batch steps where the engine batches (one step's weight
    reads serve them all), and a tool's wait overlaps them.
  }];
  let options = [
    Option<"registry", "registry", "std::string", /*default=*/"\"\"",
           "JSON file of tool signatures (for their readonly flags)">,
  ];
  let dependentDialects = ["::agent::AgentDialect"];
}

def AgentSharePrefixPass : Pass<"agent-share-prefix", "mlir::ModuleOp"> {
  let summary = "Mark generate steps whose prompts start with the same literal text";
  let description = [{
    The literal prefix of a prompt is the text of its `agent.format`
    template before the first placeholder (or the whole `agent.constant`
    string). Generate steps of a workflow that use the same model and share
    at least `min-prefix` bytes of literal prefix get the same
    `prefix_group` and `prefix_len` (bytes, cut back to a UTF-8 character
    boundary); a step joins the group with which it shares the longest
    prefix. A group of one is marked too when its step sits in an
    `agent.retry`, since every attempt renders the same prefix again.

    ```mlir
    %a = agent.generate %p1 {step = "a"}
    %b = agent.generate %p2 {step = "b"}
    // ->
    %a = agent.generate %p1 {prefix_group = 0 : i64, prefix_len = 41 : i64, step = "a"}
    %b = agent.generate %p2 {prefix_group = 0 : i64, prefix_len = 41 : i64, step = "b"}
    ```

    Why: the runtime keeps the KV cache of a group's prefix after its first
    step and starts the next step's prefill after it, so a long shared
    instruction or context is prefilled once per workflow instead of once
    per step (or per attempt).
  }];
  let options = [
    Option<"minPrefix", "min-prefix", "int64_t", /*default=*/"16",
           "Shortest shared literal prefix (bytes) worth marking">,
  ];
  let dependentDialects = ["::agent::AgentDialect"];
}

#endif // AGENT_PASSES_TD
