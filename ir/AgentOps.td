//===- AgentOps.td - agent dialect operations --------------*- tablegen -*-===//
//
// Run-time meaning of every op is part of its description: the executor in
// runtime/ implements exactly what is written here.
//
//===----------------------------------------------------------------------===//
#ifndef AGENT_OPS_TD
#define AGENT_OPS_TD

include "ir/AgentBase.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/FunctionInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Module level
//===----------------------------------------------------------------------===//

def Agent_WorkflowOp : Agent_Op<"workflow", [
    FunctionOpInterface, IsolatedFromAbove,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "A workflow: typed parameters and a body of steps";
  let description = [{
    The entry block's arguments are the parameters, in declaration order.
    Each carries its name as the argument attribute `agent.param` (what
    `--arg name=value` binds) and optionally a default value as
    `agent.default` (an attribute of the parameter's type). The result, when
    there is one, is what `agent.return` gives back. At run time the body
    runs top to bottom; an `agent.return` at any depth ends the workflow.

    ```mlir
    agent.workflow @greet(%name: !agent.string {agent.param = "name"},
                          %n: i64 {agent.default = 3 : i64, agent.param = "n"}) -> !agent.string {
      %t = agent.format "Say hello to {0}." (%name : !agent.string)
      %g = agent.generate %t {step = "hello"}
      %s = agent.text %g : !agent.generation
      agent.return %s : !agent.string
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                   TypeAttrOf<FunctionType>:$function_type,
                   OptionalAttr<DictArrayAttr>:$arg_attrs,
                   OptionalAttr<DictArrayAttr>:$res_attrs);
  let regions = (region AnyRegion:$body);
  let builders = [OpBuilder<(ins "::llvm::StringRef":$name,
                                 "::mlir::FunctionType":$type)>];
  let extraClassDeclaration = [{
    /// FunctionOpInterface / CallableOpInterface.
    ::llvm::ArrayRef<::mlir::Type> getArgumentTypes() { return getFunctionType().getInputs(); }
    ::llvm::ArrayRef<::mlir::Type> getResultTypes() { return getFunctionType().getResults(); }
    ::mlir::Region *getCallableRegion() { return &getBody(); }
    /// The name of parameter `index` (its `agent.param` attribute).
    ::llvm::StringRef getParamName(unsigned index);
  }];
  let hasCustomAssemblyFormat = 1;
  let skipDefaultBuilders = 1;
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
}

def Agent_ToolDeclOp : Agent_Op<"tool_decl", [HasParent<"::mlir::ModuleOp">]> {
  let summary = "Declares the signature of a tool the workflows may call";
  let description = [{
    `params` maps each argument name to its type; names listed in `optional`
    may be left out of a call. `readonly` promises that the tool changes no
    state, so `agent-hoist-tools` may run it concurrently with other calls
    of its namespace (`sqlite` for `sqlite.query`). The declarations are
    what `agent-verify-tools` checks calls against; the executor ignores
    them (its registry is the real one).

    ```mlir
    agent.tool_decl "sqlite.query" {optional = ["params"], params = {params = !agent.json, sql = !agent.string}, readonly}
    ```
  }];
  let arguments = (ins StrAttr:$tool, DictionaryAttr:$params,
                   OptionalAttr<StrArrayAttr>:$optional, UnitAttr:$readonly);
  let assemblyFormat = "$tool attr-dict";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Steps
//===----------------------------------------------------------------------===//

def Agent_GenerateOp : Agent_Op<"generate", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "Generates text from the model for a prompt";
  let description = [{
    Run time: wraps `prompt` in the model's chat template as one user
    message with the generation prompt added (the executor's default; a
    model without a template, or `treni agent run --raw-prompt`, uses the
    prompt as a plain completion prompt), tokenizes it, generates until
    `max_tokens`, an end-of-sequence token or one of the `stop` strings (not
    included in the text), sampling with `temperature` (0 = greedy),
    `top_p`, `top_k` and `seed`; a missing option takes the executor's
    default. `model` names one of the engine's
    loaded models (absent: the default model). The result carries the text
    and, per generated token, its log-probability, the distribution's
    entropy and its top alternatives, from which `agent.uncertainty`
    computes summaries. `step` names the step in traces.

    `prefix_group` / `prefix_len` (set by `agent-share-prefix`): steps of
    one group start with the same `prefix_len` bytes of literal prompt text,
    so the executor may keep the KV cache of that prefix after the first of
    them and reuse it (up to the last whole token inside the prefix).

    ```mlir
    %draft = agent.generate %prompt {max_tokens = 64 : i64, model = "qwen2", step = "draft", stop = ["\0A\0A"], temperature = 2.000000e-01 : f64}
    ```
  }];
  let arguments = (ins Agent_StringType:$prompt, StrAttr:$step,
                   OptionalAttr<StrAttr>:$model,
                   OptionalAttr<I64Attr>:$max_tokens,
                   OptionalAttr<F64Attr>:$temperature,
                   OptionalAttr<F64Attr>:$top_p,
                   OptionalAttr<I64Attr>:$top_k,
                   OptionalAttr<I64Attr>:$seed,
                   OptionalAttr<StrArrayAttr>:$stop,
                   OptionalAttr<I64Attr>:$prefix_group,
                   OptionalAttr<I64Attr>:$prefix_len);
  let results = (outs Agent_GenerationType:$result);
  let assemblyFormat = "$prompt attr-dict";
  let hasVerifier = 1;
}

def Agent_ToolOp : Agent_Op<"tool", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "Calls a registered tool with named arguments";
  let description = [{
    Run time: looks `tool` up in the executor's registry and calls it with
    a JSON object whose keys are `arg_names` and whose values are the
    operands (strings, numbers, booleans as JSON; `!agent.json` as is). A
    call that takes longer than `timeout_ms` counts as failed; a failed call
    is repeated up to `retries` more times (with backoff). A tool that still
    fails does not stop the workflow: the result says it failed
    (`agent.tool_ok` is false, `agent.tool_error` says why) and the workflow
    decides. `step` names the step in traces.

    ```mlir
    %rows = agent.tool "sqlite.query"(%sql, %params : !agent.string, !agent.json) {arg_names = ["sql", "params"], retries = 2 : i64, step = "rows", timeout_ms = 2000 : i64}
    ```
  }];
  let arguments = (ins StrAttr:$tool, Variadic<Agent_Value>:$args,
                   StrArrayAttr:$arg_names, StrAttr:$step,
                   OptionalAttr<I64Attr>:$timeout_ms,
                   OptionalAttr<I64Attr>:$retries);
  let results = (outs Agent_ToolResultType:$result);
  let assemblyFormat =
      "$tool `(` ($args^ `:` type($args))? `)` attr-dict";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

def Agent_ConstantOp : Agent_Op<"constant", [Pure, ConstantLike,
                                             InferTypeOpAdaptor]> {
  let summary = "A string, integer, float or boolean constant";
  let description = [{
    The type follows from the value: a string is `!agent.string`, an `i64`
    integer `i64`, an `f64` float `f64`, `true`/`false` `i1`.

    ```mlir
    %s = agent.constant "SELECT 1"
    %n = agent.constant 3 : i64
    %x = agent.constant 1.400000e+00 : f64
    %b = agent.constant true
    ```
  }];
  let arguments = (ins AnyAttrOf<[StrAttr, I64Attr, F64Attr, BoolAttr]>:$value);
  let results = (outs Agent_Value:$result);
  let assemblyFormat = "$value attr-dict";
  let hasFolder = 1;
}

def Agent_FormatOp : Agent_Op<"format", [Pure]> {
  let summary = "Fills a string template";
  let description = [{
    `{N}` in `text` is replaced by operand N rendered as text: strings
    as they are, integers in decimal, floats in the shortest form that reads
    back the same, booleans as `true`/`false`, JSON serialized compactly.
    `{{` and `}}` stand for literal braces. Every operand is used.

    ```mlir
    %p = agent.format "Question: {0}\0AUse at most {1} rows." (%q, %n : !agent.string, i64)
    ```
  }];
  let arguments = (ins StrAttr:$text, Variadic<Agent_Value>:$args);
  let results = (outs Agent_StringType:$result);
  let assemblyFormat = "$text (`(` $args^ `:` type($args) `)`)? attr-dict";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The template's text before its first placeholder, with `{{`/`}}`
    /// unescaped: what every rendering of this template starts with.
    std::string getLiteralPrefix();
  }];
}

def Agent_ListOp : Agent_Op<"list", [Pure]> {
  let summary = "Builds a JSON array from values";
  let description = [{
    The elements in order, each converted to JSON (strings as JSON strings,
    numbers, booleans; `!agent.json` as is).

    ```mlir
    %params = agent.list (%q, %n : !agent.string, i64)
    ```
  }];
  let arguments = (ins Variadic<Agent_Value>:$elements);
  let results = (outs Agent_JsonType:$result);
  let assemblyFormat = "(`(` $elements^ `:` type($elements) `)`)? attr-dict";
}

def Agent_TextOp : Agent_Op<"text", [Pure]> {
  let summary = "The text of a step result";
  let description = [{
    For a generation, the generated text. For a tool result, the output as
    text: a JSON string's contents, any other JSON serialized; the empty
    string when the tool failed.

    ```mlir
    %t = agent.text %draft : !agent.generation
    ```
  }];
  let arguments = (ins Agent_Step:$step);
  let results = (outs Agent_StringType:$result);
  let assemblyFormat = "$step attr-dict `:` type($step)";
}

def Agent_UncertaintyOp : Agent_Op<"uncertainty", [Pure]> {
  let summary = "An uncertainty summary of a generation";
  let description = [{
    `metric` is one of (over the generated tokens, natural logarithms):
    - `perplexity` (f64): exp(-mean log p(token)); 1.0 for no tokens;
    - `max_entropy` / `mean_entropy` (f64): of the sampling distributions;
    - `low_confidence` (i64): how many tokens had p below the executor's
      confidence threshold;
    - `tokens` (i64): how many tokens were generated;
    - `uncertain` (!agent.json): the low-confidence tokens, in order, as an
      array of objects with the keys `index`, `token`, `prob`, `entropy`
      and `alternatives` (an array of objects with `token` and `prob`).

    ```mlir
    %ppl = agent.uncertainty %draft "perplexity" : f64
    ```
  }];
  let arguments = (ins Agent_GenerationType:$generation, StrAttr:$metric);
  let results = (outs AnyTypeOf<[F64, I64, Agent_JsonType]>:$result);
  let assemblyFormat = "$generation $metric attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Agent_ToolOkOp : Agent_Op<"tool_ok", [Pure]> {
  let summary = "Whether a tool call succeeded";
  let description = [{
    True when the last attempt of the call returned without error within
    its timeout.

    ```mlir
    %ok = agent.tool_ok %rows
    ```
  }];
  let arguments = (ins Agent_ToolResultType:$step);
  let results = (outs I1:$result);
  let assemblyFormat = "$step attr-dict";
}

def Agent_ToolOutputOp : Agent_Op<"tool_output", [Pure]> {
  let summary = "The JSON output of a tool call";
  let description = [{
    What the tool returned; `null` when it failed.

    ```mlir
    %out = agent.tool_output %rows
    ```
  }];
  let arguments = (ins Agent_ToolResultType:$step);
  let results = (outs Agent_JsonType:$result);
  let assemblyFormat = "$step attr-dict";
}

def Agent_ToolErrorOp : Agent_Op<"tool_error", [Pure]> {
  let summary = "The error message of a failed tool call";
  let description = [{
    The last attempt's error (a timeout says so); empty when it succeeded.

    ```mlir
    %err = agent.tool_error %rows
    ```
  }];
  let arguments = (ins Agent_ToolResultType:$step);
  let results = (outs Agent_StringType:$result);
  let assemblyFormat = "$step attr-dict";
}

//===----------------------------------------------------------------------===//
// Conditions
//===----------------------------------------------------------------------===//

def Agent_CmpOp : Agent_Op<"cmp", [Pure]> {
  let summary = "Compares two values";
  let description = [{
    `predicate` is `eq`, `ne`, `lt`, `le`, `gt` or `ge`. Integers and
    floats compare as numbers (an integer meets a float as f64). Strings,
    booleans and JSON values support `eq`/`ne` only (JSON compares by
    value, not by text).

    ```mlir
    %c = agent.cmp "gt" %ppl, %limit : f64, f64
    ```
  }];
  let arguments = (ins StrAttr:$predicate, Agent_Value:$lhs, Agent_Value:$rhs);
  let results = (outs I1:$result);
  let assemblyFormat = "$predicate $lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs)";
  let hasVerifier = 1;
}

def Agent_AndOp : Agent_Op<"and", [Pure]> {
  let summary = "Logical and";
  let description = [{
    Both sides are pure, so the executor may evaluate them in any order.

    ```mlir
    %c = agent.and %a, %b
    ```
  }];
  let arguments = (ins I1:$lhs, I1:$rhs);
  let results = (outs I1:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict";
}

def Agent_OrOp : Agent_Op<"or", [Pure]> {
  let summary = "Logical or";
  let description = [{
    ```mlir
    %c = agent.or %a, %b
    ```
  }];
  let arguments = (ins I1:$lhs, I1:$rhs);
  let results = (outs I1:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict";
}

def Agent_NotOp : Agent_Op<"not", [Pure]> {
  let summary = "Logical not";
  let description = [{
    ```mlir
    %c = agent.not %a
    ```
  }];
  let arguments = (ins I1:$input);
  let results = (outs I1:$result);
  let assemblyFormat = "$input attr-dict";
}

def Agent_MatchesOp : Agent_Op<"matches", [Pure]> {
  let summary = "Whether a string matches a regular expression";
  let description = [{
    `pattern` is a PCRE2 regular expression, searched anywhere in `input`
    (anchor it with `^...$` for a whole-string match). The executor compiles
    it once; a pattern that does not compile fails the workflow with the
    compiler's message.

    ```mlir
    %m = agent.matches %t "^[0-9]+$"
    ```
  }];
  let arguments = (ins Agent_StringType:$input, StrAttr:$pattern);
  let results = (outs I1:$result);
  let assemblyFormat = "$input $pattern attr-dict";
  let hasVerifier = 1;
}

def Agent_JsonValidOp : Agent_Op<"json_valid", [Pure]> {
  let summary = "Whether a string parses as JSON";
  let description = [{
    True when the whole of `input` (leading and trailing whitespace
    allowed) is one JSON value.

    ```mlir
    %v = agent.json_valid %t
    ```
  }];
  let arguments = (ins Agent_StringType:$input);
  let results = (outs I1:$result);
  let assemblyFormat = "$input attr-dict";
}

//===----------------------------------------------------------------------===//
// Control flow
//===----------------------------------------------------------------------===//

def Agent_IfOp : Agent_Op<"if", [RecursiveMemoryEffects, NoRegionArguments,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "Runs one of two regions";
  let description = [{
    Runs `thenRegion` when `condition` is true, else `elseRegion` (an empty
    else region does nothing). Each region ends in `agent.yield` of the
    results' types, `agent.return` (the workflow ends) or
    `agent.unreachable` (every path before it returned). With results, the
    else region is required. `names` (optional) are the language names of
    the results, for traces and printing.

    ```mlir
    %answer = agent.if %ok -> (!agent.string) {
      agent.yield %a : !agent.string
    } else {
      agent.return %fallback : !agent.string
    }
    ```
  }];
  let arguments = (ins I1:$condition, OptionalAttr<StrArrayAttr>:$names);
  let results = (outs Variadic<Agent_AnyType>:$results);
  let regions = (region SizedRegion<1>:$thenRegion, MaxSizedRegion<1>:$elseRegion);
  let assemblyFormat =
      "$condition (`->` `(` type($results)^ `)`)? $thenRegion (`else` $elseRegion^)? attr-dict";
  let hasVerifier = 1;
}

def Agent_RetryOp : Agent_Op<"retry", [RecursiveMemoryEffects,
    DeclareOpInterfaceMethods<OpAsmOpInterface,
                              ["getAsmResultNames", "getAsmBlockArgumentNames"]>]> {
  let summary = "Re-runs a region while a condition holds, at most max_attempts times";
  let description = [{
    Run time:
    ```
    attempt = 0; previous = empty values of the result types
    loop:
      values = run body(attempt, previous...)
      if attempt + 1 == max_attempts or not run condition(values...): break
      previous = values; attempt += 1
    results = values
    ```
    The body's block arguments are the attempt index (i64, 0 first) and the
    previous attempt's values, one per result (on the first attempt: empty
    text, zero metrics, a failed tool result with empty error, zero, false,
    JSON null). The body ends in `agent.yield` of the result types; the
    condition region takes the yielded values and yields one `i1`: true
    means "try again". An `agent.return` inside the body ends the workflow.
    `names` (optional) are the language names of the results, for traces
    and printing.

    ```mlir
    %answer = agent.retry max 3 -> (!agent.generation) {
    ^bb0(%attempt: i64, %previous: !agent.generation):
      %g = agent.generate %prompt {step = "answer"}
      agent.yield %g : !agent.generation
    } when {
    ^bb0(%g: !agent.generation):
      %ppl = agent.uncertainty %g "perplexity" : f64
      %c = agent.cmp "gt" %ppl, %limit : f64, f64
      agent.yield %c : i1
    }
    ```
  }];
  let arguments = (ins ConfinedAttr<I64Attr, [IntPositive, IntMaxValue<1000>]>:$max_attempts,
                   OptionalAttr<StrArrayAttr>:$names);
  let results = (outs Variadic<Agent_AnyType>:$results);
  let regions = (region SizedRegion<1>:$body, SizedRegion<1>:$condition);
  let assemblyFormat =
      "`max` $max_attempts (`->` `(` type($results)^ `)`)? $body `when` $condition attr-dict";
  let hasVerifier = 1;
}

def Agent_ParallelOp : Agent_Op<"parallel", [RecursiveMemoryEffects, NoRegionArguments,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "Runs independent tool calls and generations concurrently";
  let description = [{
    Produced by `agent-hoist-tools`. The region holds only `agent.tool` and
    `agent.generate` ops (none uses another's result) and an `agent.yield`
    of their results. The executor starts every call at once and waits for
    all of them; each tool keeps its own timeout and retries, and the
    generations share the engine's batch where it batches (continuous
    batching), else run one after another. The results are the yielded
    values.

    ```mlir
    %a, %b = agent.parallel -> (!agent.tool_result, !agent.tool_result) {
      %x = agent.tool "sqlite.query"(%s1 : !agent.string) {arg_names = ["sql"], step = "a"}
      %y = agent.tool "file.read"(%path : !agent.string) {arg_names = ["path"], step = "b"}
      agent.yield %x, %y : !agent.tool_result, !agent.tool_result
    }
    ```
  }];
  let results = (outs Variadic<AnyTypeOf<[Agent_ToolResultType,
                                          Agent_GenerationType]>>:$results);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "(`->` `(` type($results)^ `)`)? $body attr-dict";
  let hasVerifier = 1;
}

def Agent_YieldOp : Agent_Op<"yield", [Pure, Terminator,
    ParentOneOf<["IfOp", "RetryOp", "ParallelOp"]>]> {
  let summary = "Ends a region of agent.if, agent.retry or agent.parallel";
  let description = [{
    The operands become the parent's results (for a retry condition region:
    the single `i1` "try again").

    ```mlir
    agent.yield %a, %b : !agent.string, i64
    ```
  }];
  let arguments = (ins Variadic<Agent_AnyType>:$values);
  let assemblyFormat = "($values^ `:` type($values))? attr-dict";
  let builders = [OpBuilder<(ins), [{ build($_builder, $_state, ::mlir::ValueRange()); }]>];
}

def Agent_ReturnOp : Agent_Op<"return", [Terminator]> {
  let summary = "Ends the workflow with its result";
  let description = [{
    Valid at any depth inside an `agent.workflow`; the operands match the
    workflow's result types. Regions around it are abandoned (a retry does
    not try again).

    ```mlir
    agent.return %answer : !agent.string
    ```
  }];
  let arguments = (ins Variadic<Agent_Value>:$values);
  let assemblyFormat = "($values^ `:` type($values))? attr-dict";
  let hasVerifier = 1;
}

def Agent_UnreachableOp : Agent_Op<"unreachable", [Terminator]> {
  let summary = "Marks the end of a block that every path left through agent.return";
  let description = [{
    Ends a block whose last op is an `agent.if` both of whose regions
    return. The executor never reaches it; if it did, that is an internal
    error of the executor, not of the workflow.

    ```mlir
    agent.unreachable
    ```
  }];
  let assemblyFormat = "attr-dict";
}

#endif // AGENT_OPS_TD
