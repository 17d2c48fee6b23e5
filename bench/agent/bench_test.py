#!/usr/bin/env python3
"""Tests of the agent benchmark's external side (ctest agent_tool_server_test,
agent_bench_smoke):

  python3 bench/agent/bench_test.py                      # the tool server
  python3 bench/agent/bench_test.py --treni BIN --model DIR   # + a short run

The tool server: the fault schedule (one counter per tool, retries count),
what a late non-idempotent call does with and without a propagated
deadline, sandboxing, the client's retries and the registry's backoff
values. The short run: both sides of every workflow on a few tasks give
the right answers at baseline (the benchmark's plumbing against `treni
agent run --batch` and `treni serve`). Standard library only.
"""

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import agent_bench as ab  # noqa: E402

FAILURES = []


def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def stock(db, id):
    con = sqlite3.connect(db)
    value = con.execute("SELECT stock FROM items WHERE id = ?", (id,)).fetchone()[0]
    con.close()
    return value


def test_tool_server(tmp):
    db, sandbox = os.path.join(tmp, "t.db"), os.path.join(tmp, "files")
    os.makedirs(sandbox)
    ab.make_db(db, 3)
    update = {"sql": "UPDATE items SET stock = stock - ? WHERE id = ?", "params": [1, 1]}

    # Fault schedule: the 3rd and 6th attempt of a tool fail, per tool.
    server = ab.ToolServer(db, sandbox, {"fail_every": 3})
    tools = ab.RemoteTools(server.port, False)
    kinds = []
    for _ in range(6):
        ok, value, kind, _ = tools._attempt("sqlite.query", {"sql": "SELECT 1 AS one"})
        kinds.append(kind if not ok else value["rows"][0]["one"])
    expect(kinds == [1, 1, "injected_fault", 1, 1, "injected_fault"],
           "fail_every 3 fails attempts 3 and 6: %s" % kinds)
    ok, value, _, _ = tools._attempt("file.write", {"path": "a.txt", "content": "x"})
    expect(ok and value == {"path": "a.txt", "bytes": 1}, "file.write has its own counter")
    ok, _, kind, error = tools._attempt("file.read", {"path": "../t.db"})
    expect(not ok and kind == "permission_denied", "a path outside the sandbox is refused")
    ok, _, kind, _ = tools._attempt("shell.run", {})
    expect(not ok and kind == "unknown_tool", "an unknown tool is refused: %s" % kind)
    # Retries: the 9th attempt (a failure) is retried as the 10th.
    for _ in range(2):
        tools._attempt("sqlite.query", {"sql": "SELECT 1"})
    ok, value, error = tools.call("sqlite.query", {"sql": "SELECT 2 AS two"})
    expect(ok and value["rows"] == [{"two": 2}], "an injected fault is retried: %s" % error)
    server.close()

    # A late UPDATE over plain HTTP: the client times out, the server applies it.
    before = stock(db, 1)
    server = ab.ToolServer(db, sandbox, {"delay_ms": 900, "delay_every": 1})
    start = time.monotonic()
    ok, _, kind, _ = ab.RemoteTools(server.port, False)._attempt("sqlite.exec", update)
    waited = time.monotonic() - start
    expect(not ok and kind == "timeout" and waited < 0.6,
           "the client gives up after %.0f ms: %s" % (1000 * ab.TIMEOUT_S, kind))
    server.close()  # waits for the abandoned request
    expect(stock(db, 1) == before - 1, "the abandoned UPDATE still took effect")

    # With the deadline propagated it does not.
    server = ab.ToolServer(db, sandbox, {"delay_ms": 900, "delay_every": 1})
    ok, _, kind, _ = ab.RemoteTools(server.port, True)._attempt("sqlite.exec", update)
    server.close()
    expect(not ok and kind == "timeout", "timeout with a propagated deadline")
    expect(stock(db, 1) == before - 1, "an UPDATE past its propagated deadline is not run")

    # No faults: one UPDATE, applied once.
    server = ab.ToolServer(db, sandbox, None)
    ok, value, _ = ab.RemoteTools(server.port, False).call("sqlite.exec", update)
    server.close()
    expect(ok and value["changes"] == 1 and stock(db, 1) == before - 2, "a plain UPDATE")

    # The registry's backoff with jitter seed 0 (measured from a
    # `treni agent run` trace: 35 ms, then 51 ms).
    expect([round(1000 * ab.backoff_s(k)) for k in (1, 2)] == [35, 51],
           "backoff matches runtime/tools/tool_registry.cpp: %s" % [ab.backoff_s(k) for k in (1, 2)])
    expect(ab.check("gated", {"a": 2, "b": 3}, "5") and not ab.check("gated", {"a": 2, "b": 3}, "6")
           and ab.check("gated", {"a": 2, "b": 3}, '{"rows":[{"total":5}]}'), "gated answers")


def test_short_run(treni, model, tmp):
    out = os.path.join(tmp, "run.json")
    cmd = [sys.executable, os.path.join(os.path.dirname(HERE), "agent_bench.py"), "--treni",
           treni, "--model", model, "--tasks", "3", "--repeat", "1", "--profiles", "baseline",
           "--json", out]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    expect(proc.returncode == 0, "agent_bench.py runs: %s" % proc.stderr[-2000:])
    if proc.returncode != 0:
        return
    rows = json.load(open(out))["rows"]
    expect([(r["workflow"], r["gate"]) for r in rows] ==
           [("retrieval", "-"), ("state", "-"), ("gated", "on"), ("gated", "off")],
           "one row per workflow and gate variant")
    for r in rows:
        for side in ("internal", "external"):
            s = r[side]
            expect(s["tasks"] == 3 and s["success"] == 1.0 and s["error_rate"] == 0 and
                   s["double_applied"] == 0,
                   "%s %s/%s: every task right at baseline (%s)" % (
                       side, r["workflow"], r["gate"], s["values"]))
        expect(r["internal"]["steps_mean"] == r["external"]["steps_mean"],
               "%s: the same steps on both sides" % r["workflow"])
        # Consecutive generate prompts share the chat template's preamble:
        # both sides' engines reuse its KV cache, and both report it.
        for side in ("internal", "external"):
            s = r[side]
            expect(s["reused_prompt_tokens"] is not None and
                   0 < s["reused_prompt_tokens"] < s["prompt_tokens"],
                   "%s %s/%s: KV reuse reported (%s of %d prompt tokens)" % (
                       side, r["workflow"], r["gate"], s["reused_prompt_tokens"],
                       s["prompt_tokens"]))


def test_reuse_accounting():
    """A trace without reused_tokens (a treni built before prefix caching)
    is unknown reuse, not 0."""
    def gen(prompt_tokens, **extra):
        return dict({"event": "step", "kind": "generate",
                     "inputs": {"prompt_tokens": prompt_tokens}}, **extra)
    tool = {"event": "step", "kind": "tool", "reused_tokens": 99}
    expect(ab.generate_reuse([gen(30, reused_tokens=0), tool, gen(40, reused_tokens=25)]) ==
           (70, 25), "reuse of the generate steps is summed (tool steps ignored)")
    expect(ab.generate_reuse([gen(30, reused_tokens=5), gen(40)]) == (70, None),
           "a generate step without reused_tokens makes the task's reuse unknown")
    expect(ab.sum_known([3, 4]) == 7 and ab.sum_known([3, None]) is None,
           "sum_known: None when any value is unknown")
    side = {"reused_prompt_tokens": None, "prompt_tokens": 70}
    expect(ab.reuse_cell(side) == "n/a of 70", "the table says n/a, not 0: %s" %
           ab.reuse_cell(side))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--treni")
    p.add_argument("--model")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="agent-bench-test-")
    try:
        if args.treni:
            test_short_run(args.treni, args.model, tmp)
        else:
            test_tool_server(tmp)
            test_reuse_accounting()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failure(s)" % len(FAILURES))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
