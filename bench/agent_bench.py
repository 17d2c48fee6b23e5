#!/usr/bin/env python3
"""Internal vs external agent workflows (issue 6).

The same three workflows (bench/agent/tasks.agent: retrieval, state, gated)
run two ways on the same tasks:

  internal  `treni agent run --batch`: the executor runs the agent IR
            in-process, calls the model through the Generator and the tools
            through the registry (timeouts, retries, fault injection);
  external  this script as the controller: each `generate` is an HTTP
            request to `treni serve` (/v1/chat/completions, text only back),
            and it runs the same tools itself (sqlite3, files in a sandbox)
            with the same timeouts (350 ms per attempt, abandoned threads, as
            the registry does), retries (2, exponential backoff from 50 ms)
            and the same fault schedule.

Profiles: baseline (no faults) and stress (every tool fails its 9th, 18th,
... attempt and sleeps 1.1 s inside its 11th, 22nd, ... attempt; one counter
per tool, carried across the tasks of a workflow, reset between workflows on
both sides).

Measured per workflow and side: latency per task (the internal executor's
own clock for the run, the controller's wall clock per task; model load and
server start excluded on both sides), task success (the returned value
checked against the database this script built), and the tool-failure rate
(tasks ending in a tool error).

With random-weight test models the generated text is meaningless, so the
tasks' success depends only on the tool pipeline, validation and retries;
latency is real. Standard library only.

  python3 bench/agent_bench.py --treni build/bin/treni --model test/fixtures/qwen2 \
      [--device cpu|gpu] [--tokenizer DIR] [--tasks 20] [--repeat 3]
      [--profiles baseline,stress] [--json OUT]
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FLOW = os.path.join(HERE, "agent", "tasks.agent")
TIMEOUT_S = 0.35
RETRIES = 2
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0
STRESS = {"fail_every": 9, "delay_ms": 1100, "delay_every": 11}
COUNTRIES = [("France", "FRA"), ("Germany", "DEU"), ("Japan", "JPN"), ("Brazil", "BRA"),
             ("Canada", "CAN"), ("Kenya", "KEN"), ("India", "IND"), ("Mexico", "MEX"),
             ("Norway", "NOR"), ("Chile", "CHL"), ("Egypt", "EGY"), ("Spain", "ESP"),
             ("Peru", "PER"), ("Italy", "ITA"), ("Ghana", "GHA"), ("Nepal", "NPL")]


def make_db(path, n):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price TEXT, stock INTEGER)")
    con.execute("CREATE TABLE countries (name TEXT PRIMARY KEY, code TEXT)")
    for i in range(1, n + 1):
        con.execute("INSERT INTO items VALUES (?, ?, ?, ?)",
                    (i, "item-%d" % i, "%d.%02d" % (3 * i + 7, (i * 37) % 100), 100 + 5 * i))
    con.executemany("INSERT INTO countries VALUES (?, ?)", COUNTRIES)
    con.commit()
    con.close()


def tasks_for(workflow, n):
    if workflow == "retrieval":
        return [{"id": i} for i in range(1, n + 1)]
    if workflow == "state":
        return [{"id": i, "qty": 1 + i % 4} for i in range(1, n + 1)]
    return [{"country": COUNTRIES[i % len(COUNTRIES)][0]} for i in range(n)]


def check(workflow, args, value):
    """Whether a task's returned value is right (against the fresh database)."""
    if not isinstance(value, str) or value.startswith("ERROR"):
        return False
    try:
        if workflow == "retrieval":
            i = args["id"]
            price = "%d.%02d" % (3 * i + 7, (i * 37) % 100)
            if re.fullmatch(r"[0-9]+\.[0-9][0-9]", value):
                return value == price
            rows = json.loads(value)["rows"]
            return len(rows) == 1 and rows[0]["price"] == price
        if workflow == "state":
            i, qty = args["id"], args["qty"]
            after, note = value.split("|", 1)
            stock = json.loads(after)["rows"][0]["stock"]
            return stock == 100 + 5 * i - qty and json.loads(note)["content"] == after
        code = dict(COUNTRIES)[args["country"]]
        if re.fullmatch(r"[A-Z]{3}", value):
            return value == code
        rows = json.loads(value)["rows"]
        return len(rows) == 1 and rows[0]["code"] == code
    except (ValueError, KeyError, IndexError, TypeError):
        return False


# ---------------------------------------------------------------------------
# Internal: treni agent run --batch
# ---------------------------------------------------------------------------

def run_internal(args, workflow, tasks, workdir, faults):
    config = {"sqlite": {"path": os.path.join(workdir, "bench.db")},
              "files": {"sandbox": os.path.join(workdir, "files")}}
    if faults:
        config["faults"] = {"*": faults}
    config_path = os.path.join(workdir, "tools.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    batch_path = os.path.join(workdir, "tasks.jsonl")
    with open(batch_path, "w") as f:
        for t in tasks:
            f.write(json.dumps(t) + "\n")
    cmd = [args.treni, "agent", "run", FLOW, "--workflow", workflow, "--model", args.model,
           "--device", args.device, "--max-seq", str(args.max_seq), "--tools-config",
           config_path, "--batch", batch_path, "--trace", os.path.join(workdir, "trace.json")]
    if args.tokenizer:
        cmd += ["--tokenizer", args.tokenizer]
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - start
    if out.returncode != 0:
        sys.exit("internal run failed (%d): %s\n%s" % (out.returncode, " ".join(cmd), out.stderr))
    results = []
    for line, task in zip(out.stdout.splitlines(), tasks):
        r = json.loads(line)
        results.append({"ok": r.get("ok", False) and check(workflow, task, r.get("value")),
                        "seconds": r.get("seconds", 0.0),
                        "tool_error": (not r.get("ok")) or str(r.get("value", "")).startswith("ERROR"),
                        "steps": r.get("steps", 0)})
    return results, wall


# ---------------------------------------------------------------------------
# External: HTTP to treni serve, tools here
# ---------------------------------------------------------------------------

class ToolError(Exception):
    pass


class Tools:
    """sqlite.query/exec and file.read/write with the registry's semantics:
    per-attempt timeout on an abandoned thread, retries with backoff, and the
    fault injector's schedule (per-tool attempt counters)."""

    def __init__(self, db, sandbox, faults):
        self.db, self.sandbox, self.faults = db, sandbox, faults
        self.counters = {}
        self.lock = threading.Lock()
        self.rng = random.Random(0)

    def _body(self, name, a):
        if name.startswith("sqlite."):
            con = sqlite3.connect(self.db, timeout=2.0, check_same_thread=False)
            try:
                cur = con.execute(a["sql"], a.get("params", []))
                if name == "sqlite.query":
                    cols = [d[0] for d in cur.description]
                    return {"columns": cols, "rows": [dict(zip(cols, r)) for r in cur.fetchall()],
                            "truncated": False}
                con.commit()
                return {"changes": cur.rowcount, "last_insert_rowid": cur.lastrowid,
                        "statements": 1}
            finally:
                con.close()
        path = os.path.realpath(os.path.join(self.sandbox, a["path"]))
        if not path.startswith(os.path.realpath(self.sandbox) + os.sep):
            raise ToolError("path outside the sandbox")
        if name == "file.write":
            with open(path, "w") as f:
                f.write(a["content"])
            return {"path": a["path"], "bytes": len(a["content"].encode())}
        with open(path) as f:
            content = f.read()
        return {"path": a["path"], "content": content, "bytes": len(content.encode()),
                "encoding": "utf-8"}

    def _attempt(self, name, a):
        with self.lock:
            n = self.counters.get(name, 0) + 1
            self.counters[name] = n
        f = self.faults or {}
        if f.get("fail_every") and n % f["fail_every"] == 0:
            raise ToolError("injected_fault: fail_every %d (attempt %d)" % (f["fail_every"], n))
        box = {}

        def work():
            try:
                if f.get("delay_ms") and n % f.get("delay_every", 1) == 0:
                    time.sleep(f["delay_ms"] / 1000.0)
                box["value"] = self._body(name, a)
            except Exception as e:  # the tool's own error
                box["error"] = "tool_error: %s" % e
        t = threading.Thread(target=work, daemon=True)
        t.start()
        t.join(TIMEOUT_S)
        if t.is_alive():
            raise ToolError("timeout: no result within %d ms" % (TIMEOUT_S * 1000))
        if "error" in box:
            raise ToolError(box["error"])
        return box["value"]

    def call(self, name, a):
        """(ok, value, error) after up to RETRIES retries."""
        error = ""
        for k in range(RETRIES + 1):
            if k:
                d = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (k - 1))
                time.sleep(d / 2 + self.rng.random() * d / 2)
            try:
                return True, self._attempt(name, a), ""
            except ToolError as e:
                error = str(e)
                if error.startswith("tool_error"):
                    break  # not retryable
        return False, None, error


def text_of(value):
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                           sort_keys=True)


class Controller:
    def __init__(self, url, model, tools):
        self.url, self.model, self.tools = url, model, tools

    def generate(self, prompt, max_tokens):
        body = json.dumps({"model": self.model, "max_tokens": max_tokens, "temperature": 0,
                           "messages": [{"role": "user", "content": prompt}]}).encode()
        req = urllib.request.Request(self.url + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())["choices"][0]["message"]["content"] or ""

    def retrieval(self, id):
        for _ in range(2):
            ok, row, err = self.tools.call("sqlite.query", {
                "sql": "SELECT name, price FROM items WHERE id = ?", "params": [id]})
            if ok:
                break
        if not ok:
            return "ERROR " + err
        answer = self.generate("Record: %s\nWhat is the price of this item?" % text_of(row), 16)
        if re.search(r"^[0-9]+\.[0-9][0-9]$", answer):
            return answer
        return text_of(row)

    def state(self, id, qty):
        ok, before, err = self.tools.call("sqlite.query", {
            "sql": "SELECT stock FROM items WHERE id = ?", "params": [id]})
        if not ok:
            return "ERROR " + err
        self.generate("Stock: %s\nShip %d units? Answer yes or no." % (text_of(before), qty), 8)
        ok, _, err = self.tools.call("sqlite.exec", {
            "sql": "UPDATE items SET stock = stock - ? WHERE id = ?", "params": [qty, id]})
        if not ok:
            return "ERROR " + err
        ok, after, err = self.tools.call("sqlite.query", {
            "sql": "SELECT stock FROM items WHERE id = ?", "params": [id]})
        if not ok:
            return "ERROR " + err
        path = "ship-%d.txt" % id
        ok1, _, e1 = self.tools.call("file.write", {"path": path, "content": text_of(after)})
        ok2, check_, e2 = self.tools.call("file.read", {"path": path})
        if not (ok1 and ok2):
            return "ERROR file: " + e1 + e2
        return text_of(after) + "|" + text_of(check_)

    def gated(self, country):
        # Text only: no entropy to gate on, so only the format check decides.
        guess = self.generate(
            "The ISO 3166 alpha-3 code of %s, as three capital letters:" % country, 4)
        if not re.search(r"^[A-Z][A-Z][A-Z]$", guess):
            ok, look, err = self.tools.call("sqlite.query", {
                "sql": "SELECT code FROM countries WHERE name = ?", "params": [country]})
            if not ok:
                return "ERROR " + err
            return text_of(look)
        return guess


def run_external(url, model, workflow, tasks, workdir, faults):
    tools = Tools(os.path.join(workdir, "bench.db"), os.path.join(workdir, "files"), faults)
    controller = Controller(url, model, tools)
    results = []
    start_all = time.monotonic()
    for task in tasks:
        start = time.monotonic()
        try:
            value = getattr(controller, workflow)(**task)
        except Exception as e:  # an HTTP failure fails the task
            value = "ERROR controller: %s" % e
        results.append({"ok": check(workflow, task, value),
                        "seconds": time.monotonic() - start,
                        "tool_error": value.startswith("ERROR")})
    return results, time.monotonic() - start_all


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_server(args):
    port = free_port()
    cmd = [args.treni, "serve", args.model, "--device", args.device, "--host", "127.0.0.1",
           "--port", str(port), "--max-seq", str(args.max_seq)]
    if args.tokenizer:
        cmd += ["--tokenizer", args.tokenizer]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("treni serve exited: %s" % proc.stderr.read())
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2) as resp:
                model = json.loads(resp.read())["data"][0]["id"]
                return proc, url, model
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("treni serve did not come up")


def summarize(results):
    lat = sorted(r["seconds"] for r in results)
    return {"tasks": len(results),
            "success": sum(r["ok"] for r in results) / len(results),
            "tool_failure_rate": sum(r["tool_error"] for r in results) / len(results),
            "mean_ms": 1000 * statistics.mean(lat),
            "p50_ms": 1000 * statistics.median(lat),
            "p90_ms": 1000 * lat[min(len(lat) - 1, int(0.9 * len(lat)))],
            "max_ms": 1000 * lat[-1]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--treni", default="build/bin/treni")
    p.add_argument("--model", default="test/fixtures/qwen2")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--tokenizer", default="",
                   help="tokenizer directory for models without one (both sides)")
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--max-seq", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3,
                   help="rounds per (profile, workflow); the two sides alternate "
                        "which goes first; per-task latencies are pooled")
    p.add_argument("--profiles", default="baseline,stress")
    p.add_argument("--workflows", default="retrieval,state,gated")
    p.add_argument("--json", help="write all numbers here")
    args = p.parse_args()

    server, url, served = start_server(args)
    rows = []
    try:
        for profile in args.profiles.split(","):
            faults = STRESS if profile == "stress" else None
            for workflow in args.workflows.split(","):
                tasks = tasks_for(workflow, args.tasks)
                pooled = {"internal": [], "external": []}
                walls = {"internal": 0.0, "external": 0.0}
                for round_ in range(args.repeat):
                    order = ("internal", "external") if round_ % 2 == 0 else ("external",
                                                                              "internal")
                    for name in order:
                        workdir = tempfile.mkdtemp(prefix="agent-bench-")
                        os.makedirs(os.path.join(workdir, "files"))
                        make_db(os.path.join(workdir, "bench.db"), args.tasks)
                        if name == "internal":
                            results, wall = run_internal(args, workflow, tasks, workdir, faults)
                        else:
                            results, wall = run_external(url, served, workflow, tasks, workdir,
                                                         faults)
                        pooled[name] += results
                        walls[name] += wall
                        shutil.rmtree(workdir, ignore_errors=True)
                side = {name: dict(summarize(pooled[name]), wall_s=walls[name],
                                   repeats=args.repeat) for name in pooled}
                rows.append({"profile": profile, "workflow": workflow, **{
                    k: side[k] for k in side}})
                i, e = side["internal"], side["external"]
                print("%-8s %-9s | internal %7.1f ms mean %7.1f p50 succ %4.0f%% toolfail %4.0f%% "
                      "| external %7.1f ms mean %7.1f p50 succ %4.0f%% toolfail %4.0f%% | "
                      "latency ext/int %.2fx" % (
                          profile, workflow, i["mean_ms"], i["p50_ms"], 100 * i["success"],
                          100 * i["tool_failure_rate"], e["mean_ms"], e["p50_ms"],
                          100 * e["success"], 100 * e["tool_failure_rate"],
                          e["mean_ms"] / max(i["mean_ms"], 1e-9)), flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "model": args.model, "tasks": args.tasks,
                       "repeat": args.repeat,
                       "stress": STRESS, "timeout_s": TIMEOUT_S, "retries": RETRIES,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
