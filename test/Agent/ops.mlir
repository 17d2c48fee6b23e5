// RUN: treni-opt %s | FileCheck %s
// RUN: treni-opt %s | treni-opt | FileCheck %s
// RUN: treni-opt %s -mlir-print-op-generic | treni-opt | FileCheck %s

// Tests that every agent op, type and attribute round-trips, and that
// parameters and step results print under their names.

// CHECK: agent.tool_decl "sqlite.query" {optional = ["params"], params = {params = !agent.json, sql = !agent.string}, readonly}
agent.tool_decl "sqlite.query" {optional = ["params"], params = {params = !agent.json, sql = !agent.string}, readonly}
// CHECK: agent.tool_decl "http.get" {params = {url = !agent.string}}
agent.tool_decl "http.get" {params = {url = !agent.string}}

// CHECK-LABEL: agent.workflow @all(%name: !agent.string {agent.param = "name"}, %n: i64 {agent.default = 3 : i64, agent.param = "n"}, %limit: f64 {agent.default = 1.400000e+00 : f64, agent.param = "limit"}, %strict: i1 {agent.default = false, agent.param = "strict"}, %data: !agent.json {agent.default = "[]", agent.param = "data"}) -> !agent.string
agent.workflow @all(%name: !agent.string {agent.param = "name"},
                    %n: i64 {agent.default = 3 : i64, agent.param = "n"},
                    %limit: f64 {agent.default = 1.4 : f64, agent.param = "limit"},
                    %strict: i1 {agent.default = false, agent.param = "strict"},
                    %data: !agent.json {agent.default = "[]", agent.param = "data"}) -> !agent.string {
  // CHECK: %[[S:.+]] = agent.constant "SELECT 1"
  %s = agent.constant "SELECT 1"
  // CHECK: agent.constant 7 : i64
  %i = agent.constant 7 : i64
  // CHECK: agent.constant 2.500000e-01 : f64
  %f = agent.constant 0.25 : f64
  // CHECK: agent.constant true
  %b = agent.constant true
  // CHECK: %[[P:.+]] = agent.format "Say {{.}}{hi}{{.}} to {0} {1} times."(%name, %n : !agent.string, i64)
  %p = agent.format "Say {{hi}} to {0} {1} times." (%name, %n : !agent.string, i64)
  // CHECK: %draft = agent.generate %[[P]] {max_tokens = 64 : i64, model = "qwen2", prefix_group = 0 : i64, prefix_len = 4 : i64, seed = 7 : i64, step = "draft", stop = ["\0A\0A", "END"], temperature = 2.000000e-01 : f64, top_k = 40 : i64, top_p = 9.000000e-01 : f64}
  %g = agent.generate %p {max_tokens = 64 : i64, model = "qwen2", step = "draft", stop = ["\0A\0A", "END"], temperature = 0.2 : f64, top_p = 0.9 : f64, top_k = 40 : i64, seed = 7 : i64, prefix_group = 0 : i64, prefix_len = 4 : i64}
  // CHECK: %[[L:.+]] = agent.list(%name, %n, %data : !agent.string, i64, !agent.json)
  %l = agent.list (%name, %n, %data : !agent.string, i64, !agent.json)
  // CHECK: agent.list{{$}}
  %empty = agent.list
  // CHECK: %rows = agent.tool "sqlite.query"(%[[S]], %[[L]] : !agent.string, !agent.json) {arg_names = ["sql", "params"], retries = 2 : i64, step = "rows", timeout_ms = 2000 : i64}
  %rows = agent.tool "sqlite.query"(%s, %l : !agent.string, !agent.json) {arg_names = ["sql", "params"], retries = 2 : i64, step = "rows", timeout_ms = 2000 : i64}
  // CHECK: agent.tool "clock.now"() {arg_names = [], step = "now"}
  %now = agent.tool "clock.now"() {arg_names = [], step = "now"}
  // CHECK: agent.text %draft : !agent.generation
  %text = agent.text %g : !agent.generation
  // CHECK: agent.text %rows : !agent.tool_result
  %rows_text = agent.text %rows : !agent.tool_result
  // CHECK: agent.uncertainty %draft "perplexity" : f64
  %ppl = agent.uncertainty %g "perplexity" : f64
  // CHECK: agent.uncertainty %draft "max_entropy" : f64
  %maxe = agent.uncertainty %g "max_entropy" : f64
  // CHECK: agent.uncertainty %draft "mean_entropy" : f64
  %meane = agent.uncertainty %g "mean_entropy" : f64
  // CHECK: agent.uncertainty %draft "low_confidence" : i64
  %low = agent.uncertainty %g "low_confidence" : i64
  // CHECK: agent.uncertainty %draft "tokens" : i64
  %tokens = agent.uncertainty %g "tokens" : i64
  // CHECK: agent.uncertainty %draft "uncertain" : !agent.json
  %uncertain = agent.uncertainty %g "uncertain" : !agent.json
  // CHECK: agent.tool_ok %rows
  %ok = agent.tool_ok %rows
  // CHECK: agent.tool_output %rows
  %out = agent.tool_output %rows
  // CHECK: agent.tool_error %rows
  %err = agent.tool_error %rows
  // CHECK: agent.cmp "gt" %{{.+}}, %limit : f64, f64
  %c1 = agent.cmp "gt" %ppl, %limit : f64, f64
  // CHECK: agent.cmp "ge" %{{.+}}, %limit : i64, f64
  %c2 = agent.cmp "ge" %low, %limit : i64, f64
  // CHECK: agent.cmp "eq" %{{.+}}, %{{.+}} : !agent.json, !agent.json
  %c3 = agent.cmp "eq" %out, %data : !agent.json, !agent.json
  // CHECK: agent.and
  %and = agent.and %c1, %c2
  // CHECK: agent.or
  %or = agent.or %and, %c3
  // CHECK: agent.not
  %not = agent.not %or
  // CHECK: agent.matches %{{.+}} "^[0-9]+$"
  %m = agent.matches %text "^[0-9]+$"
  // CHECK: agent.json_valid
  %v = agent.json_valid %text
  // CHECK: agent.retry max 3 -> (!agent.generation, i64) {
  // CHECK-NEXT: ^bb0(%{{.+}}: i64, %{{.+}}: !agent.generation, %{{.+}}: i64):
  // CHECK: } when {
  // CHECK-NEXT: ^bb0(%{{.+}}: !agent.generation, %{{.+}}: i64):
  %r:2 = agent.retry max 3 -> (!agent.generation, i64) {
  ^bb0(%attempt: i64, %previous: !agent.generation, %previous_n: i64):
    %g2 = agent.generate %p {step = "answer"}
    agent.yield %g2, %attempt : !agent.generation, i64
  } when {
  ^bb0(%g3: !agent.generation, %k: i64):
    %ppl3 = agent.uncertainty %g3 "perplexity" : f64
    %again = agent.cmp "gt" %ppl3, %limit : f64, f64
    agent.yield %again : i1
  }
  // CHECK: agent.if %{{.+}} {
  // CHECK-NEXT: agent.yield
  // CHECK-NEXT: }
  agent.if %strict {
    agent.yield
  }
  // CHECK: agent.if %{{.+}} -> (!agent.string) {
  // CHECK: } else {
  // CHECK: agent.return %name : !agent.string
  %answer = agent.if %ok -> (!agent.string) {
    agent.yield %text : !agent.string
  } else {
    agent.return %name : !agent.string
  }
  // CHECK: agent.parallel -> (!agent.tool_result, !agent.tool_result) {
  %both:2 = agent.parallel -> (!agent.tool_result, !agent.tool_result) {
    %x = agent.tool "sqlite.query"(%s : !agent.string) {arg_names = ["sql"], step = "x"}
    %y = agent.tool "http.get"(%answer : !agent.string) {arg_names = ["url"], step = "y"}
    agent.yield %x, %y : !agent.tool_result, !agent.tool_result
  }
  // CHECK: agent.parallel -> (!agent.generation, !agent.tool_result) {
  %mixed:2 = agent.parallel -> (!agent.generation, !agent.tool_result) {
    %pg = agent.generate %s {step = "pg"}
    %z = agent.tool "http.get"(%s : !agent.string) {arg_names = ["url"], step = "z"}
    agent.yield %pg, %z : !agent.generation, !agent.tool_result
  }
  // CHECK: agent.return %{{.+}} : !agent.string
  agent.return %answer : !agent.string
}

// Tests a workflow without parameters or result, ending in a branch that
// returns on both sides.
// CHECK-LABEL: agent.workflow @nothing()
// CHECK: agent.unreachable
agent.workflow @nothing() {
  %t = agent.constant true
  agent.if %t {
    agent.return
  } else {
    agent.return
  }
  agent.unreachable
}
