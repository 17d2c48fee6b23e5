// RUN: treni-opt %s -split-input-file -agent-verify-tools -verify-diagnostics | FileCheck %s
// RUN: treni-opt %S/Inputs/registry-calls.mlir -agent-verify-tools=registry=%S/Inputs/tools.json | FileCheck %s --check-prefix=REGISTRY
// RUN: not treni-opt %S/Inputs/registry-calls.mlir -agent-verify-tools 2>&1 | FileCheck %s --check-prefix=NOREGISTRY
// RUN: not treni-opt %S/Inputs/registry-calls.mlir -agent-verify-tools=registry=%S/Inputs/missing.json 2>&1 | FileCheck %s --check-prefix=MISSING
// RUN: not treni-opt %S/Inputs/registry-calls.mlir -agent-verify-tools=registry=%S/Inputs/bad-tools.json 2>&1 | FileCheck %s --check-prefix=BADFILE

// Tests that calls matching the registry file's signatures pass: a required
// argument only, an optional int, a call of a second tool.
// REGISTRY-LABEL: agent.workflow @read
// REGISTRY-COUNT-3: agent.tool
// Tests that without the file the same calls are unknown tools.
// NOREGISTRY: error: unknown tool 'file.read': no tools are declared (add 'extern tool' declarations or a registry file)
// MISSING: error: cannot read tool registry '{{.*}}missing.json'
// BADFILE: error: tool registry '{{.*}}bad-tools.json': tools[0]: tool signature 'file.read': parameter 'path': unknown tool type 'text' (expected string, int, float, bool or json)

// Tests that well-formed calls pass: all arguments, an optional one left
// out, an i64 where a float is declared, any value where json is.
// CHECK-LABEL: agent.workflow @ok
// CHECK-COUNT-3: agent.tool "sqlite.query"
agent.tool_decl "sqlite.query" {optional = ["params", "limit"], params = {limit = f64, params = !agent.json, sql = !agent.string}, readonly}
agent.workflow @ok(%q: !agent.string {agent.param = "q"}, %n: i64 {agent.param = "n"}) {
  %l = agent.list (%q : !agent.string)
  %a = agent.tool "sqlite.query"(%q, %l : !agent.string, !agent.json) {arg_names = ["sql", "params"], step = "a"}
  %b = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = ["sql"], step = "b"}
  %c = agent.tool "sqlite.query"(%q, %n, %n : !agent.string, i64, i64) {arg_names = ["sql", "limit", "params"], step = "c"}
  agent.return
}

// -----

// Tests that an unknown tool is reported with the closest declared name.
agent.tool_decl "sqlite.query" {params = {sql = !agent.string}}
agent.tool_decl "http.get" {params = {url = !agent.string}}
agent.workflow @unknown(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{unknown tool 'sqlite.qeury' (did you mean 'sqlite.query'?) (declared: http.get, sqlite.query)}}
  %a = agent.tool "sqlite.qeury"(%q : !agent.string) {arg_names = ["sql"], step = "a"}
  agent.return
}

// -----

// Tests that an argument the tool does not take is reported, with the
// closest parameter name.
agent.tool_decl "sqlite.query" {params = {sql = !agent.string}}
agent.workflow @extra(%q: !agent.string {agent.param = "q"}) {
  // expected-error @+1 {{tool 'sqlite.query' has no argument 'sq1' (did you mean 'sql'?) (arguments: sql)}}
  %a = agent.tool "sqlite.query"(%q, %q : !agent.string, !agent.string) {arg_names = ["sql", "sq1"], step = "a"}
  agent.return
}

// -----

// Tests that a value of the wrong type is reported.
agent.tool_decl "sqlite.query" {params = {sql = !agent.string}}
agent.workflow @mistyped(%n: i64 {agent.param = "n"}) {
  // expected-error @+1 {{argument 'sql' of tool 'sqlite.query' must be a string, got an int}}
  %a = agent.tool "sqlite.query"(%n : i64) {arg_names = ["sql"], step = "a"}
  agent.return
}

// -----

// Tests that a float is not accepted where an int is declared.
agent.tool_decl "file.read" {params = {max_bytes = i64, path = !agent.string}}
agent.workflow @float_for_int(%p: !agent.string {agent.param = "p"}, %x: f64 {agent.param = "x"}) {
  // expected-error @+1 {{argument 'max_bytes' of tool 'file.read' must be an int, got a float}}
  %a = agent.tool "file.read"(%p, %x : !agent.string, f64) {arg_names = ["path", "max_bytes"], step = "a"}
  agent.return
}

// -----

// Tests that a missing required argument is reported, and that every
// problem of a call is reported, not only the first.
agent.tool_decl "file.write" {params = {content = !agent.string, path = !agent.string}}
agent.workflow @missing(%p: i1 {agent.param = "p"}) {
  // expected-error @+2 {{argument 'path' of tool 'file.write' must be a string, got a bool}}
  // expected-error @+1 {{tool 'file.write' needs argument 'content' (string)}}
  %a = agent.tool "file.write"(%p : i1) {arg_names = ["path"], step = "a"}
  agent.return
}
