// RUN: treni-opt %s -split-input-file -agent-hoist-tools | FileCheck %s

// Tests that two independent calls of different namespaces become one
// agent.parallel at the first call's place, above the generate between
// them (which needs the first call's result), with the second call's
// argument computation moved up too.
// CHECK-LABEL: agent.workflow @independent
// CHECK:         %[[SQL:.+]] = agent.constant "SELECT 1"
// CHECK:         %[[URL:.+]] = agent.format "http://127.0.0.1/{0}"(%q : !agent.string)
// CHECK:         %a, %b = agent.parallel -> (!agent.tool_result, !agent.tool_result) {
// CHECK-NEXT:      %[[A:.+]] = agent.tool "sqlite.query"(%[[SQL]] : !agent.string) {arg_names = ["sql"], step = "a"}
// CHECK-NEXT:      %[[B:.+]] = agent.tool "http.get"(%[[URL]] : !agent.string) {arg_names = ["url"], step = "b"}
// CHECK-NEXT:      agent.yield %[[A]], %[[B]] : !agent.tool_result, !agent.tool_result
// CHECK-NEXT:    }
// CHECK:         agent.text %a : !agent.tool_result
// CHECK:         agent.generate
// CHECK:         agent.text %b : !agent.tool_result
agent.workflow @independent(%q: !agent.string {agent.param = "q"}) -> !agent.string {
  %sql = agent.constant "SELECT 1"
  %a = agent.tool "sqlite.query"(%sql : !agent.string) {arg_names = ["sql"], step = "a"}
  %ta = agent.text %a : !agent.tool_result
  %g = agent.generate %ta {step = "g"}
  %url = agent.format "http://127.0.0.1/{0}" (%q : !agent.string)
  %b = agent.tool "http.get"(%url : !agent.string) {arg_names = ["url"], step = "b"}
  %tb = agent.text %b : !agent.tool_result
  %s = agent.format "{0} {1}" (%ta, %tb : !agent.string, !agent.string)
  agent.return %s : !agent.string
}

// -----

// Tests that independent generates join a group too (with a tool call
// between them, whose namespace they cannot conflict with), each prompt's
// computation moved up, while a generate whose prompt needs a member's
// result stays after the group.
// CHECK-LABEL: agent.workflow @generates
// CHECK:         %[[P2:.+]] = agent.format "second {0}"
// CHECK:         %first, %lookup, %second = agent.parallel -> (!agent.generation, !agent.tool_result, !agent.generation) {
// CHECK-NEXT:      agent.generate %q {step = "first"}
// CHECK-NEXT:      agent.tool "http.get"
// CHECK-NEXT:      agent.generate %[[P2]] {step = "second"}
// CHECK-NEXT:      agent.yield
// CHECK-NEXT:    }
// CHECK:         %[[T:.+]] = agent.text %first : !agent.generation
// CHECK:         agent.generate %[[T]] {step = "third"}
agent.workflow @generates(%q: !agent.string {agent.param = "q"}) -> !agent.string {
  %first = agent.generate %q {step = "first"}
  %lookup = agent.tool "http.get"(%q : !agent.string) {arg_names = ["url"], step = "lookup"}
  %p2 = agent.format "second {0}" (%q : !agent.string)
  %second = agent.generate %p2 {step = "second"}
  %t = agent.text %first : !agent.generation
  %third = agent.generate %t {step = "third"}
  %r = agent.text %third : !agent.generation
  agent.return %r : !agent.string
}

// -----

// Tests that a call whose argument comes from a generate stays after it
// (the generate itself joins the call before it).
// CHECK-LABEL: agent.workflow @needs_generate
// CHECK:         %a, %g = agent.parallel
// CHECK-NEXT:      agent.tool "sqlite.query"
// CHECK-NEXT:      agent.generate
// CHECK:         %[[T:.+]] = agent.text %g
// CHECK:         agent.tool "http.get"(%[[T]] : !agent.string)
agent.workflow @needs_generate(%q: !agent.string {agent.param = "q"}) {
  %a = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = ["sql"], step = "a"}
  %g = agent.generate %q {step = "g"}
  %t = agent.text %g : !agent.generation
  %b = agent.tool "http.get"(%t : !agent.string) {arg_names = ["url"], step = "b"}
  agent.return
}

// -----

// Tests that a call using another call's result is not grouped with it.
// CHECK-LABEL: agent.workflow @data_dependence
// CHECK-NOT:     agent.parallel
agent.workflow @data_dependence(%q: !agent.string {agent.param = "q"}) {
  %a = agent.tool "http.get"(%q : !agent.string) {arg_names = ["url"], step = "a"}
  %t = agent.text %a : !agent.tool_result
  %b = agent.tool "sqlite.query"(%t : !agent.string) {arg_names = ["sql"], step = "b"}
  agent.return
}

// -----

// Tests that calls of one namespace stay ordered unless both are declared
// readonly: a write and a read of sqlite are not grouped, two reads are.
// CHECK-LABEL: agent.workflow @same_namespace
// CHECK:         agent.tool "sqlite.exec"
// CHECK-NEXT:    agent.parallel
// CHECK-NEXT:      agent.tool "sqlite.query"{{.*}}step = "read1"
// CHECK-NEXT:      agent.tool "sqlite.query"{{.*}}step = "read2"
agent.tool_decl "sqlite.query" {params = {sql = !agent.string}, readonly}
agent.workflow @same_namespace(%q: !agent.string {agent.param = "q"}) {
  %w = agent.tool "sqlite.exec"(%q : !agent.string) {arg_names = ["sql"], step = "write"}
  %r1 = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = ["sql"], step = "read1"}
  %r2 = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = ["sql"], step = "read2"}
  agent.return
}

// -----

// Tests that two calls of an undeclared tool (not known to be readonly)
// keep their order and stay apart.
// CHECK-LABEL: agent.workflow @undeclared
// CHECK-NOT:     agent.parallel
agent.workflow @undeclared(%q: !agent.string {agent.param = "q"}) {
  %a = agent.tool "file.write"(%q : !agent.string) {arg_names = ["path"], step = "a"}
  %b = agent.tool "file.read"(%q : !agent.string) {arg_names = ["path"], step = "b"}
  agent.return
}

// -----

// Tests that a call does not move above an if that may return: it must not
// run when the workflow has already ended.
// CHECK-LABEL: agent.workflow @early_return
// CHECK-NOT:     agent.parallel
agent.workflow @early_return(%q: !agent.string {agent.param = "q"}, %c: i1 {agent.param = "c"}) -> !agent.string {
  %a = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = ["sql"], step = "a"}
  agent.if %c {
    agent.return %q : !agent.string
  }
  %b = agent.tool "http.get"(%q : !agent.string) {arg_names = ["url"], step = "b"}
  agent.return %q : !agent.string
}

// -----

// Tests that calls inside a retry body are grouped within the body, and
// that the result of the parallel feeds the yield.
// CHECK-LABEL: agent.workflow @in_retry
// CHECK:         agent.retry max 2
// CHECK:           %a, %b = agent.parallel
// CHECK:           agent.yield %a, %b : !agent.tool_result, !agent.tool_result
agent.workflow @in_retry(%q: !agent.string {agent.param = "q"}) {
  %r:2 = agent.retry max 2 -> (!agent.tool_result, !agent.tool_result) {
  ^bb0(%i: i64, %pa: !agent.tool_result, %pb: !agent.tool_result):
    %a = agent.tool "sqlite.query"(%q : !agent.string) {arg_names = ["sql"], step = "a"}
    %b = agent.tool "http.get"(%q : !agent.string) {arg_names = ["url"], step = "b"}
    agent.yield %a, %b : !agent.tool_result, !agent.tool_result
  } when {
  ^bb0(%a: !agent.tool_result, %b: !agent.tool_result):
    %ok = agent.tool_ok %a
    %bad = agent.not %ok
    agent.yield %bad : i1
  }
  agent.return
}
