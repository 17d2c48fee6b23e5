// RUN: treni-opt %s -split-input-file -agent-share-prefix | FileCheck %s
// RUN: treni-opt %s -split-input-file -agent-share-prefix=min-prefix=200 | FileCheck %s --check-prefix=LONG
// RUN: not treni-opt %s -agent-share-prefix=min-prefix=0 2>&1 | FileCheck %s --check-prefix=ZERO

// ZERO: error: agent-share-prefix: min-prefix must be at least 1, got 0
// LONG-NOT: prefix_group

// Tests that two generate steps whose templates start with the same 39
// bytes ("You are a careful assistant.\nQuestion: ") share a group with
// that length, and that a step with another prefix gets none.
// CHECK-LABEL: agent.workflow @shared
// CHECK:         agent.generate %{{.+}} {prefix_group = 0 : i64, prefix_len = 39 : i64, step = "first"}
// CHECK:         agent.generate %{{.+}} {prefix_group = 0 : i64, prefix_len = 39 : i64, step = "second"}
// CHECK:         agent.generate %{{.+}} {step = "other"}
agent.workflow @shared(%q: !agent.string {agent.param = "q"}) {
  %p1 = agent.format "You are a careful assistant.\0AQuestion: {0}\0AAnswer:" (%q : !agent.string)
  %a = agent.generate %p1 {step = "first"}
  %t = agent.text %a : !agent.generation
  %p2 = agent.format "You are a careful assistant.\0AQuestion: {0}\0ADraft: {1}\0ABetter answer:" (%q, %t : !agent.string, !agent.string)
  %b = agent.generate %p2 {step = "second"}
  %p3 = agent.format "Summarize in one line: {0}" (%q : !agent.string)
  %c = agent.generate %p3 {step = "other"}
  agent.return
}

// -----

// Tests that steps sharing less than min-prefix bytes, steps whose prompt
// starts with a placeholder, and steps of different models are not grouped.
// CHECK-LABEL: agent.workflow @not_shared
// CHECK-NOT:     prefix_group
agent.workflow @not_shared(%q: !agent.string {agent.param = "q"}) {
  %p1 = agent.format "Short: {0}" (%q : !agent.string)
  %a = agent.generate %p1 {step = "a"}
  %p2 = agent.format "Short: {0}!" (%q : !agent.string)
  %b = agent.generate %p2 {step = "b"}
  %p3 = agent.format "{0} is the question; answer it carefully." (%q : !agent.string)
  %c = agent.generate %p3 {step = "c"}
  %d = agent.generate %p3 {step = "d"}
  %p4 = agent.constant "Translate the following sentence into French."
  %e = agent.generate %p4 {model = "small", step = "e"}
  %f = agent.generate %p4 {model = "large", step = "f"}
  agent.return
}

// -----

// Tests that a whole constant prompt is a prefix, that a step joins the
// group it shares the longest prefix with, and that the group's length
// shrinks to what all its members share ("Return JSON {\"answer\": ...} ",
// 28 bytes: an escaped brace is one byte).
// CHECK-LABEL: agent.workflow @longest
// CHECK:         agent.generate %{{.+}} {prefix_group = 0 : i64, prefix_len = 28 : i64, step = "a"}
// CHECK:         agent.generate %{{.+}} {prefix_group = 0 : i64, prefix_len = 28 : i64, step = "b"}
// CHECK:         agent.generate %{{.+}} {prefix_group = 1 : i64, prefix_len = 23 : i64, step = "c"}
// CHECK:         agent.generate %{{.+}} {prefix_group = 1 : i64, prefix_len = 23 : i64, step = "d"}
// CHECK:         agent.generate %{{.+}} {prefix_group = 0 : i64, prefix_len = 28 : i64, step = "e"}
agent.workflow @longest(%q: !agent.string {agent.param = "q"}) {
  %p1 = agent.constant "Return JSON {\22answer\22: ...} for this question."
  %a = agent.generate %p1 {step = "a"}
  %p2 = agent.format "Return JSON {{\22answer\22: ...}} only: {0}" (%q : !agent.string)
  %b = agent.generate %p2 {step = "b"}
  %p3 = agent.format "List three facts about {0}" (%q : !agent.string)
  %c = agent.generate %p3 {step = "c"}
  %p4 = agent.format "List three facts about {0}, shortly" (%q : !agent.string)
  %d = agent.generate %p4 {step = "d"}
  %p5 = agent.format "Return JSON {{\22answer\22: ...}} and nothing else: {0}" (%q : !agent.string)
  %e = agent.generate %p5 {step = "e"}
  agent.return
}

// -----

// Tests that a lone step inside a retry is marked: every attempt renders
// the same prefix again. A lone step outside a retry is not.
// CHECK-LABEL: agent.workflow @retry
// CHECK:         agent.generate %{{.+}} {step = "once"}
// CHECK:         agent.retry
// CHECK:           agent.generate %{{.+}} {prefix_group = 0 : i64, prefix_len = 34 : i64, step = "again"}
agent.workflow @retry(%q: !agent.string {agent.param = "q"}) {
  %p0 = agent.format "Say something different about {0}" (%q : !agent.string)
  %once = agent.generate %p0 {step = "once"}
  %r = agent.retry max 3 -> (!agent.generation) {
  ^bb0(%i: i64, %prev: !agent.generation):
    %t = agent.text %prev : !agent.generation
    %p = agent.format "Answer the question very briefly. {0} (not: {1})" (%q, %t : !agent.string, !agent.string)
    %g = agent.generate %p {step = "again"}
    agent.yield %g : !agent.generation
  } when {
  ^bb0(%g: !agent.generation):
    %ppl = agent.uncertainty %g "perplexity" : f64
    %limit = agent.constant 1.4 : f64
    %c = agent.cmp "gt" %ppl, %limit : f64, f64
    agent.yield %c : i1
  }
  agent.return
}

// -----

// Tests that the shared length never ends inside a UTF-8 character: after
// "Write a short note: " (20 bytes) come "é" (C3 A9) and "è" (C3 A8); their
// common lead byte C3 is not counted.
// CHECK-LABEL: agent.workflow @utf8
// CHECK:         agent.generate %{{.+}} {prefix_group = 0 : i64, prefix_len = 20 : i64, step = "a"}
// CHECK:         agent.generate %{{.+}} {prefix_group = 0 : i64, prefix_len = 20 : i64, step = "b"}
agent.workflow @utf8(%q: !agent.string {agent.param = "q"}) {
  %p1 = agent.format "Write a short note: \C3\A9t\C3\A9 {0}" (%q : !agent.string)
  %a = agent.generate %p1 {step = "a"}
  %p2 = agent.format "Write a short note: \C3\A8re {0}" (%q : !agent.string)
  %b = agent.generate %p2 {step = "b"}
  agent.return
}
