// RUN: treni-opt %s -split-input-file -verify-diagnostics

//===----------------------------------------------------------------------===//
// agent.workflow
//===----------------------------------------------------------------------===//

// Tests that a workflow needs a body.
// expected-error @+1 {{'agent.workflow' op needs a body}}
agent.workflow @decl(%q: !agent.string {agent.param = "q"})

// -----

// Tests that a workflow returns at most one value.
// expected-error @+1 {{returns at most one value}}
agent.workflow @two() -> (i64, i64) {
  %a = agent.constant 1 : i64
  agent.return %a, %a : i64, i64
}

// -----

// Tests that a workflow cannot return a step result.
// expected-error @+1 {{result type '!agent.generation' is not a value type}}
agent.workflow @step(%p: !agent.string {agent.param = "p"}) -> !agent.generation {
  agent.unreachable
}

// -----

// Tests that parameters have value types.
// expected-error @+1 {{parameter #0 has type 'i32', not a value type}}
agent.workflow @i32(%x: i32 {agent.param = "x"}) {
  agent.return
}

// -----

// Tests that every parameter is named.
// expected-error @+1 {{parameter #1 needs a 'agent.param' name}}
agent.workflow @unnamed(%x: i64 {agent.param = "x"}, %y: i64) {
  agent.return
}

// -----

// Tests that parameter names are unique.
// expected-error @+1 {{parameter name 'x' is used twice}}
agent.workflow @twice(%x: i64 {agent.param = "x"}, %y: i64 {agent.param = "x"}) {
  agent.return
}

// -----

// Tests that a default has the parameter's type.
// expected-error @+1 {{default of parameter 'x' is not a 'i64'}}
agent.workflow @default(%x: i64 {agent.default = 1.0 : f64, agent.param = "x"}) {
  agent.return
}

// -----

// Tests that the body ends with a terminator.
agent.workflow @open() {
  // expected-error @+1 {{block with no terminator}}
  %a = agent.constant 1 : i64
}

// -----

//===----------------------------------------------------------------------===//
// agent.tool_decl
//===----------------------------------------------------------------------===//

// Tests that a tool declaration needs a name.
// expected-error @+1 {{needs a tool name}}
agent.tool_decl "" {params = {}}

// -----

// Tests that declared parameters have value types.
// expected-error @+1 {{parameter 'sql' must map to a value type}}
agent.tool_decl "sqlite.query" {params = {sql = "string"}}

// -----

// Tests that optional parameters are declared parameters.
// expected-error @+1 {{optional parameter 'limit' is not in params}}
agent.tool_decl "sqlite.query" {optional = ["limit"], params = {sql = !agent.string}}

// -----

// Tests that a tool is declared once.
agent.tool_decl "sqlite.query" {params = {sql = !agent.string}}
// expected-error @+1 {{tool 'sqlite.query' is declared twice}}
agent.tool_decl "sqlite.query" {params = {sql = !agent.string}}

// -----

// Tests that tool declarations live at module level.
agent.workflow @nested() {
  // expected-error @+1 {{expects parent op 'builtin.module'}}
  agent.tool_decl "x" {params = {}}
  agent.return
}

// -----

//===----------------------------------------------------------------------===//
// agent.generate
//===----------------------------------------------------------------------===//

agent.workflow @generate(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{needs a step name}}
  %g = agent.generate %p {step = ""}
  agent.return
}

// -----

agent.workflow @generate(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{max_tokens must be positive, got 0}}
  %g = agent.generate %p {max_tokens = 0 : i64, step = "g"}
  agent.return
}

// -----

agent.workflow @generate(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{temperature must be >= 0, got -1}}
  %g = agent.generate %p {step = "g", temperature = -1.0 : f64}
  agent.return
}

// -----

agent.workflow @generate(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{top_p must be in (0, 1], got 1.5}}
  %g = agent.generate %p {step = "g", top_p = 1.5 : f64}
  agent.return
}

// -----

agent.workflow @generate(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{top_k must be >= 0, got -2}}
  %g = agent.generate %p {step = "g", top_k = -2 : i64}
  agent.return
}

// -----

agent.workflow @generate(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{prefix_group and prefix_len come together}}
  %g = agent.generate %p {prefix_group = 0 : i64, step = "g"}
  agent.return
}

// -----

agent.workflow @generate(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{prefix_len must be positive, got 0}}
  %g = agent.generate %p {prefix_group = 0 : i64, prefix_len = 0 : i64, step = "g"}
  agent.return
}

// -----

agent.workflow @generate(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{prefix_group must be >= 0, got -1}}
  %g = agent.generate %p {prefix_group = -1 : i64, prefix_len = 4 : i64, step = "g"}
  agent.return
}

// -----

// Tests that the prompt is a string.
agent.workflow @generate(%p: i64 {agent.param = "p"}) {
  // expected-error @+1 {{operand #0 must be UTF-8 text, but got 'i64'}}
  %g = "agent.generate"(%p) {step = "g"} : (i64) -> !agent.generation
  agent.return
}

// -----

//===----------------------------------------------------------------------===//
// agent.tool
//===----------------------------------------------------------------------===//

agent.workflow @tool(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{needs a tool name}}
  %t = agent.tool ""(%q : !agent.string) {arg_names = ["sql"], step = "t"}
  agent.return
}

// -----

agent.workflow @tool(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{needs a step name}}
  %t = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = ["sql"], step = ""}
  agent.return
}

// -----

agent.workflow @tool(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{has 1 argument(s) but 2 argument name(s)}}
  %t = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = ["sql", "params"], step = "t"}
  agent.return
}

// -----

agent.workflow @tool(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{argument names must not be empty}}
  %t = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = [""], step = "t"}
  agent.return
}

// -----

agent.workflow @tool(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{argument 'sql' is given twice}}
  %t = agent.tool "sqlite.query"(%q, %q : !agent.string, !agent.string) {arg_names = ["sql", "sql"], step = "t"}
  agent.return
}

// -----

agent.workflow @tool(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{timeout_ms must be positive, got 0}}
  %t = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = ["sql"], step = "t", timeout_ms = 0 : i64}
  agent.return
}

// -----

agent.workflow @tool(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{retries must be >= 0, got -1}}
  %t = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = ["sql"], retries = -1 : i64, step = "t"}
  agent.return
}

// -----

// Tests that a step result is no tool argument.
agent.workflow @tool(%p: !agent.string {agent.param = "p"}) {
  %g = agent.generate %p {step = "g"}
  // expected-error @+1 {{operand #0 must be variadic of agent value}}
  %t = agent.tool "sqlite.query"(%g : !agent.generation) {arg_names = ["sql"], step = "t"}
  agent.return
}

// -----

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

agent.workflow @constant() {
  // expected-error @+1 {{attribute 'value' failed to satisfy constraint}}
  %c = agent.constant 3 : i32
  agent.return
}

// -----

agent.workflow @format(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{template: unmatched '}' at offset 4 (write '}}' for a literal brace)}}
  %f = agent.format "oops} {0}" (%q : !agent.string)
  agent.return
}

// -----

agent.workflow @format(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{template: placeholder at offset 0 is not '{N}' with an operand number N (write '{{' for a literal brace)}}
  %f = agent.format "{name} {0}" (%q : !agent.string)
  agent.return
}

// -----

agent.workflow @format(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{placeholder {1} but only 1 operand(s)}}
  %f = agent.format "{0} {1}" (%q : !agent.string)
  agent.return
}

// -----

agent.workflow @format(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{operand #1 is not used by the template}}
  %f = agent.format "{0}" (%q, %q : !agent.string, !agent.string)
  agent.return
}

// -----

agent.workflow @uncertainty(%p: !agent.string {agent.param = "p"}) {
  %g = agent.generate %p {step = "g"}
  // expected-error @+1 {{unknown metric 'confidence' (perplexity, max_entropy, mean_entropy, low_confidence, tokens, uncertain)}}
  %u = agent.uncertainty %g "confidence" : f64
  agent.return
}

// -----

agent.workflow @uncertainty(%p: !agent.string {agent.param = "p"}) {
  %g = agent.generate %p {step = "g"}
  // expected-error @+1 {{metric 'low_confidence' is a 'i64', not 'f64'}}
  %u = agent.uncertainty %g "low_confidence" : f64
  agent.return
}

// -----

//===----------------------------------------------------------------------===//
// Conditions
//===----------------------------------------------------------------------===//

agent.workflow @cmp(%a: i64 {agent.param = "a"}) {
  // expected-error @+1 {{unknown predicate 'gte' (eq, ne, lt, le, gt, ge)}}
  %c = agent.cmp "gte" %a, %a : i64, i64
  agent.return
}

// -----

agent.workflow @cmp(%a: i64 {agent.param = "a"}, %s: !agent.string {agent.param = "s"}) {
  // expected-error @+1 {{cannot compare 'i64' with '!agent.string'}}
  %c = agent.cmp "eq" %a, %s : i64, !agent.string
  agent.return
}

// -----

agent.workflow @cmp(%s: !agent.string {agent.param = "s"}) {
  // expected-error @+1 {{'lt' needs numbers, not '!agent.string'}}
  %c = agent.cmp "lt" %s, %s : !agent.string, !agent.string
  agent.return
}

// -----

agent.workflow @matches(%s: !agent.string {agent.param = "s"}) {
  // expected-error @+1 {{needs a non-empty pattern}}
  %m = agent.matches %s ""
  agent.return
}

// -----

agent.workflow @and(%a: i64 {agent.param = "a"}) {
  // expected-error @+1 {{operand #0 must be 1-bit signless integer}}
  %c = "agent.and"(%a, %a) : (i64, i64) -> i1
  agent.return
}

// -----

//===----------------------------------------------------------------------===//
// agent.if
//===----------------------------------------------------------------------===//

agent.workflow @if(%c: i1 {agent.param = "c"}) {
  // expected-error @+1 {{then region must end with agent.yield, agent.return or agent.unreachable}}
  agent.if %c {
    %a = agent.constant 1 : i64
  }
  agent.return
}

// -----

agent.workflow @if(%c: i1 {agent.param = "c"}, %s: !agent.string {agent.param = "s"}) {
  // expected-error @+1 {{else region yields 1 value(s) of types (i64) but (!agent.string) are expected}}
  %r = agent.if %c -> (!agent.string) {
    agent.yield %s : !agent.string
  } else {
    %a = agent.constant 1 : i64
    // expected-note @+1 {{yield is here}}
    agent.yield %a : i64
  }
  agent.return
}

// -----

agent.workflow @if(%c: i1 {agent.param = "c"}, %s: !agent.string {agent.param = "s"}) {
  // expected-error @+1 {{with results needs an else region}}
  %r = agent.if %c -> (!agent.string) {
    agent.yield %s : !agent.string
  }
  agent.return
}

// -----

//===----------------------------------------------------------------------===//
// agent.retry
//===----------------------------------------------------------------------===//

agent.workflow @retry(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{body arguments must be the attempt index (i64) then one previous value per result (!agent.generation), got (!agent.generation)}}
  %r = agent.retry max 2 -> (!agent.generation) {
  ^bb0(%prev: !agent.generation):
    %g = agent.generate %p {step = "g"}
    agent.yield %g : !agent.generation
  } when {
  ^bb0(%g: !agent.generation):
    %t = agent.constant true
    agent.yield %t : i1
  }
  agent.return
}

// -----

agent.workflow @retry(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{body must end with agent.yield}}
  agent.retry max 2 {
  ^bb0(%i: i64):
    agent.return
  } when {
    %t = agent.constant true
    agent.yield %t : i1
  }
  agent.return
}

// -----

agent.workflow @retry(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{condition arguments must be the body's values (!agent.generation), got ()}}
  %r = agent.retry max 2 -> (!agent.generation) {
  ^bb0(%i: i64, %prev: !agent.generation):
    %g = agent.generate %p {step = "g"}
    agent.yield %g : !agent.generation
  } when {
    %t = agent.constant true
    agent.yield %t : i1
  }
  agent.return
}

// -----

agent.workflow @retry(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{condition region yields 1 value(s) of types (i64) but (i1) are expected}}
  agent.retry max 2 {
  ^bb0(%i: i64):
    agent.yield
  } when {
    %n = agent.constant 1 : i64
    // expected-note @+1 {{yield is here}}
    agent.yield %n : i64
  }
  agent.return
}

// -----

agent.workflow @retry() {
  // expected-error @+1 {{attribute 'max_attempts' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive whose maximum value is 1000}}
  agent.retry max 0 {
  ^bb0(%i: i64):
    agent.yield
  } when {
    %t = agent.constant true
    agent.yield %t : i1
  }
  agent.return
}

// -----

agent.workflow @retry_too_many() {
  // expected-error @+1 {{attribute 'max_attempts' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive whose maximum value is 1000}}
  agent.retry max 1001 {
  ^bb0(%i: i64):
    agent.yield
  } when {
    %t = agent.constant true
    agent.yield %t : i1
  }
  agent.return
}

// -----

//===----------------------------------------------------------------------===//
// agent.parallel, agent.yield, agent.return
//===----------------------------------------------------------------------===//

agent.workflow @parallel(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{may only hold agent.tool and agent.generate ops, found 'agent.format'}}
  %r = agent.parallel -> (!agent.generation) {
    %f = agent.format "{0}!" (%p : !agent.string)
    %g = agent.generate %p {step = "g"}
    agent.yield %g : !agent.generation
  }
  agent.return
}

// -----

agent.workflow @parallel(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{may only hold agent.tool and agent.generate ops, found 'agent.text'}}
  %r:2 = agent.parallel -> (!agent.tool_result, !agent.tool_result) {
    %a = agent.tool "http.get"(%p : !agent.string) {arg_names = ["url"], step = "a"}
    %t = agent.text %a : !agent.tool_result
    %b = agent.tool "sqlite.query"(%t : !agent.string) {arg_names = ["sql"], step = "b"}
    agent.yield %a, %b : !agent.tool_result, !agent.tool_result
  }
  agent.return
}

// -----

agent.workflow @parallel(%p: !agent.string {agent.param = "p"}) {
  // expected-error @+1 {{body yields 1 value(s) of types (!agent.tool_result) but (!agent.tool_result, !agent.tool_result) are expected}}
  %r:2 = agent.parallel -> (!agent.tool_result, !agent.tool_result) {
    %a = agent.tool "http.get"(%p : !agent.string) {arg_names = ["url"], step = "a"}
    // expected-note @+1 {{yield is here}}
    agent.yield %a : !agent.tool_result
  }
  agent.return
}

// -----

agent.workflow @yield() {
  // expected-error @+1 {{expects parent op to be one of 'agent.if, agent.retry, agent.parallel'}}
  agent.yield
}

// -----

agent.workflow @ret(%n: i64 {agent.param = "n"}) -> !agent.string {
  // expected-error @+1 {{returns (i64) but workflow 'ret' returns (!agent.string)}}
  agent.return %n : i64
}

// -----

func.func @not_a_workflow() {
  // expected-error @+1 {{must be inside an agent.workflow}}
  agent.return
}
