#!/usr/bin/env python3
"""Internal vs external agent workflows (issue 6).

The same three workflows (bench/agent/tasks.agent: retrieval, state, gated)
run two ways on the same tasks:

  internal  `treni agent run --batch`: the executor runs the agent IR
            in-process, calls the model through the Generator and the tools
            through the registry (timeouts, retries, fault injection);
  external  this script as the controller: each `generate` is an HTTP
            request to `treni serve` (/v1/chat/completions: text back), each
            tool call an HTTP request to a separate tool-server process
            (bench/agent/tool_server.py, one per round) with the same
            per-attempt timeout (350 ms: the client stops waiting), retries
            (2, after timeout / unavailable / injected_fault), backoff (50 ms
            doubling, capped at 2 s, the registry's deterministic "equal
            jitter" from seed 0) and fault schedule.

Profiles: baseline (no faults) and stress (every tool fails its 9th, 18th,
... attempt and sleeps 1.1 s inside its 11th, 22nd, ... attempt; one
counter per tool, counting retries, reset at the start of every round on
both sides: the internal side's counters live in its registry, the
external side's in its tool server).

Per (profile, workflow, gate variant) and side: success (the returned value
checked against the data this script built, and for `state` the database
after the round as well), steps (generate + tool steps per task, as the
executor counts them), latency per task (the executor's own clock per run;
the controller's wall clock per task; model load and server start excluded
on both sides), error rate (tasks that returned a tool or controller error),
double-applied updates (`state` items whose stock was decremented
twice) and KV-cache reuse (prompt tokens of the generate steps that were
not prefilled: the internal side's trace `reused_tokens`, the external
side's `usage.prompt_tokens_details.cached_tokens`; "n/a" when the binary
does not report it, i.e. predates prefix caching).

Where the two sides differ in failure behaviour, and why (nothing else
differs: same tasks, order, faults, timeouts, retries):

  * Abandoned non-idempotent calls (`state`, stress). The 11th attempt of
    `sqlite.exec` sleeps 1.1 s and times out at 350 ms on both sides, and
    both retry. In-process, the registry gives the attempt a ToolContext
    with the deadline and cancels it: the injected delay is a cancellable
    sleep that ends at the deadline, after which runBody
    (runtime/tools/tool_registry.cpp) returns a timeout without running the
    tool. So the abandoned attempt never applies the UPDATE and the retry
    applies it once. (The built-in SQLite tool also waits for its
    connection only until the deadline and interrupts a statement still
    running then, checked every 1000 VM steps: runtime/tools/builtin_tools.cpp.) Over plain HTTP the tool server
    does not know its client's deadline: it sleeps, then runs the UPDATE
    after the client has given up, and the client's retry applies it a
    second time. The returned value looks right (the task re-reads the
    stock before the late UPDATE lands), so the damage shows only in the
    database afterwards: the `double` column. Passing the deadline to the
    tool server (--propagate-deadline, an X-Deadline-Ms header it honours
    as the registry does) removes the difference; ordinary HTTP tool
    endpoints have no such contract. Caveat for the in-process side: the
    guarantee holds for work not yet started at the deadline. A tool that
    neither polls its context nor can be killed (a custom in-process
    function), or a short statement (under 1000 VM steps) or commit already
    running when the deadline passes, is abandoned, not stopped, and can
    apply late too.
  * Confidence-gated branching (`gated`). The internal workflow reads the
    answer's max token entropy and computes the sum with a tool when it is
    over the gate; the text-only controller gets no entropy and can only
    check the format (it behaves as the gate-off variant). With
    --external-logprobs it asks treni serve for top_logprobs (20) and gates
    on the entropy of those 20 plus one bucket for the rest (a lower bound
    of the true entropy). With a random-weight model the format check
    alone sends every task to the tool; only a trained model
    (bench/tiny_model.py) makes this column mean anything.
  * Latency: the external side pays an HTTP round trip (new connection) to
    the server per generate and to the tool server per tool attempt; the
    internal side calls both in-process.

With random-weight test models the generated text is meaningless: success
depends only on the tool pipeline, validation and retries; structure and
latency are real. Standard library only.

  python3 bench/agent_bench.py --treni build/bin/treni --model test/fixtures/qwen2 \\
      [--device cpu|gpu] [--tokenizer DIR] [--tasks 20] [--repeat 3]
      [--profiles baseline,stress] [--workflows retrieval,state,gated]
      [--gate-variants on,off] [--gate 0.5] [--gated-tasks N] [--external-logprobs]
      [--propagate-deadline] [--json OUT] [--table OUT]
"""

import argparse
import http.client
import json
import math
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
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FLOW = os.path.join(HERE, "agent", "tasks.agent")
TOOL_SERVER = os.path.join(HERE, "agent", "tool_server.py")
TIMEOUT_S = 0.35
RETRIES = 2
BACKOFF_BASE_MS = 50
BACKOFF_CAP_MS = 2000
RETRYABLE = ("timeout", "unavailable", "injected_fault")
STRESS = {"fail_every": 9, "delay_ms": 1100, "delay_every": 11}
MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------------------
# Deterministic data (shared with bench/tiny_model.py)
# ---------------------------------------------------------------------------

def deterministic_unit(seed, index):
    """runtime/tools/fault_injection.cpp deterministicUnit: splitmix64 -> [0, 1)."""
    z = (seed + (index + 1) * 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    return (z >> 11) * 2.0 ** -53


def arith_split(a, b):
    """'test' (10%), 'val' (5%) or 'train' for the pair (a, b), 0 <= a, b < 1000."""
    u = deterministic_unit(20261130, a * 1000 + b)
    return "test" if u < 0.10 else "val" if u < 0.15 else "train"


def arith_prompt(a, b):
    """The `gated` workflow's prompt (bench/agent/tasks.agent), for training."""
    return "What is %d + %d?" % (a, b)


def arith_pairs(n, split="test", seed=7):
    """n distinct pairs of `split`, in a fixed order."""
    rng, seen, pairs = random.Random(seed), set(), []
    while len(pairs) < n:
        a, b = rng.randrange(1000), rng.randrange(1000)
        if (a, b) not in seen and arith_split(a, b) == split:
            seen.add((a, b))
            pairs.append((a, b))
    return pairs


def make_db(path, n):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price TEXT, stock INTEGER)")
    for i in range(1, n + 1):
        con.execute("INSERT INTO items VALUES (?, ?, ?, ?)",
                    (i, "item-%d" % i, "%d.%02d" % (3 * i + 7, (i * 37) % 100), 100 + 5 * i))
    con.commit()
    con.close()


def tasks_for(workflow, n, variant, gate):
    if workflow == "retrieval":
        return [{"id": i} for i in range(1, n + 1)]
    if workflow == "state":
        return [{"id": i, "qty": 1 + i % 4} for i in range(1, n + 1)]
    return [{"a": a, "b": b, "gate": gate, "use_gate": variant == "on"}
            for a, b in arith_pairs(n)]


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
        total = args["a"] + args["b"]
        if re.fullmatch(r"[0-9]+", value):
            return int(value) == total
        rows = json.loads(value)["rows"]
        return len(rows) == 1 and rows[0]["total"] == total
    except (ValueError, KeyError, IndexError, TypeError):
        return False


def final_state(workflow, tasks, db):
    """Per task: (the database is right afterwards, the update was applied twice)."""
    if workflow != "state":
        return [(True, False)] * len(tasks)
    con = sqlite3.connect(db)
    stock = dict(con.execute("SELECT id, stock FROM items").fetchall())
    con.close()
    out = []
    for t in tasks:
        want = 100 + 5 * t["id"] - t["qty"]
        out.append((stock.get(t["id"]) == want, stock.get(t["id"]) == want - t["qty"]))
    return out


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
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("internal run failed (%d): %s\n%s" % (out.returncode, " ".join(cmd), out.stderr))
    results = []
    for line, task in zip(out.stdout.splitlines(), tasks):
        r = json.loads(line)
        value = r.get("value")
        results.append({"value": value, "returned_ok": r.get("ok", False) and
                        check(workflow, task, value),
                        "seconds": r.get("seconds", 0.0), "steps": r.get("steps", 0),
                        "error": (not r.get("ok")) or str(value).startswith("ERROR")})
    if len(results) != len(tasks):
        sys.exit("internal run printed %d results for %d tasks" % (len(results), len(tasks)))
    with open(os.path.join(workdir, "trace.json")) as f:
        traces = json.load(f)
    for result, events in zip(results, traces):
        result["prompt_tokens"], result["reused_tokens"] = generate_reuse(events)
    return results


def generate_reuse(events):
    """KV-cache reuse of one task's trace: (prompt tokens of its generate
    steps, those of them not prefilled). The second is None when a generate
    step has no `reused_tokens` (a treni built before prefix caching):
    unknown, not 0."""
    steps = [e for e in events if e.get("event") == "step" and e.get("kind") == "generate"]
    prompt = sum(e.get("inputs", {}).get("prompt_tokens", 0) for e in steps)
    if any("reused_tokens" not in e for e in steps):
        return prompt, None
    return prompt, sum(e["reused_tokens"] for e in steps)


def sum_known(values):
    """The sum, or None when any value is unknown (None)."""
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


# ---------------------------------------------------------------------------
# External: HTTP to treni serve, HTTP to the tool server
# ---------------------------------------------------------------------------

def backoff_s(retry):
    """runtime/tools/tool_registry.cpp backoffDelay with jitter seed 0."""
    d = BACKOFF_BASE_MS
    for _ in range(1, retry):
        if d >= BACKOFF_CAP_MS:
            break
        d *= 2
    d = min(d, BACKOFF_CAP_MS)
    return (d // 2 + int(deterministic_unit(0, retry) * (d - d // 2))) / 1000.0


class ToolServer:
    """A bench/agent/tool_server.py process."""

    def __init__(self, db, sandbox, faults):
        cmd = [sys.executable, TOOL_SERVER, "--db", db, "--sandbox", sandbox]
        if faults:
            cmd += ["--faults", json.dumps(faults)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            sys.exit("tool server did not start: %r" % line)
        self.port = int(line.split()[1])

    def close(self):
        """Stops it once every request in flight (abandoned ones too) has finished."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("POST", "/shutdown", body=b"{}")
            conn.getresponse().read()
            conn.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


class RemoteTools:
    """Tool calls over HTTP with the registry's timeout, retries and backoff."""

    def __init__(self, port, propagate_deadline):
        self.port, self.propagate_deadline = port, propagate_deadline

    def _attempt(self, name, a):
        headers = {"Content-Type": "application/json"}
        if self.propagate_deadline:
            headers["X-Deadline-Ms"] = str(int(TIMEOUT_S * 1000))
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        start = time.monotonic()
        try:
            conn.request("POST", "/call/" + name, body=json.dumps(a).encode(), headers=headers)
            resp = conn.getresponse()
            body = json.loads(resp.read())
        except (socket.timeout, TimeoutError):
            return False, None, "timeout", "timeout: no answer within %d ms (abandoned)" % (
                TIMEOUT_S * 1000)
        except (OSError, ValueError, http.client.HTTPException) as e:
            return False, None, "unavailable", "unavailable: %s" % e
        finally:
            conn.close()
        # One deadline for the whole attempt, as the registry's.
        if time.monotonic() - start > TIMEOUT_S:
            return False, None, "timeout", "timeout: answer after %d ms" % (TIMEOUT_S * 1000)
        if body.get("ok"):
            return True, body["value"], "", ""
        err = body.get("error", {})
        return False, None, err.get("type", "tool_error"), "%s: %s" % (
            err.get("type"), err.get("message"))

    def call(self, name, a):
        """(ok, value, error) after up to RETRIES retries."""
        error = ""
        for k in range(RETRIES + 1):
            if k:
                time.sleep(backoff_s(k))
            ok, value, kind, error = self._attempt(name, a)
            if ok:
                return True, value, ""
            if kind not in RETRYABLE:
                break
        return False, None, error


def text_of(value):
    """A tool step's `.text`: a JSON string's contents, other JSON serialized
    compactly with sorted keys (nlohmann::json's objects are sorted)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                           sort_keys=True)


def top_entropy(top):
    """Entropy (nats) of the top alternatives plus one bucket for the rest."""
    ps = [math.exp(t["logprob"]) for t in top if t.get("logprob") is not None]
    rest = max(0.0, 1.0 - sum(ps))
    return -sum(p * math.log(p) for p in ps + [rest] if p > 0)


class Controller:
    def __init__(self, url, model, tools, logprobs):
        self.url, self.model, self.tools, self.logprobs = url, model, tools, logprobs
        self.steps = 0
        # The server's KV-cache reuse (usage.prompt_tokens_details.cached_tokens;
        # None once a response lacks it).
        self.prompt_tokens, self.reused_tokens = 0, 0

    def generate(self, prompt, max_tokens):
        """(text, max entropy or None)."""
        self.steps += 1
        req = {"model": self.model, "max_tokens": max_tokens, "temperature": 0,
               "messages": [{"role": "user", "content": prompt}]}
        if self.logprobs:
            req.update(logprobs=True, top_logprobs=20)
        request = urllib.request.Request(self.url + "/v1/chat/completions",
                                         data=json.dumps(req).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as resp:
            body = json.loads(resp.read())
        choice = body["choices"][0]
        usage = body.get("usage") or {}
        self.prompt_tokens += usage.get("prompt_tokens", 0)
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        if cached is None or self.reused_tokens is None:
            self.reused_tokens = None
        else:
            self.reused_tokens += cached
        entropy = None
        if self.logprobs and choice.get("logprobs"):
            entropy = max((top_entropy(t["top_logprobs"]) for t in choice["logprobs"]["content"]),
                          default=0.0)
        return choice["message"]["content"] or "", entropy

    def tool(self, name, a):
        self.steps += 1
        return self.tools.call(name, a)

    def retrieval(self, id):
        for _ in range(2):
            ok, row, err = self.tool("sqlite.query", {
                "sql": "SELECT name, price FROM items WHERE id = ?", "params": [id]})
            if ok:
                break
        if not ok:
            return "ERROR " + err
        answer, _ = self.generate("Record: %s\nWhat is the price of this item?" % text_of(row), 16)
        if re.search(r"^[0-9]+\.[0-9][0-9]$", answer):
            return answer
        return text_of(row)

    def state(self, id, qty):
        ok, before, err = self.tool("sqlite.query", {
            "sql": "SELECT stock FROM items WHERE id = ?", "params": [id]})
        if not ok:
            return "ERROR " + err
        self.generate("Stock: %s\nShip %d units? Answer yes or no." % (text_of(before), qty), 8)
        ok, _, err = self.tool("sqlite.exec", {
            "sql": "UPDATE items SET stock = stock - ? WHERE id = ?", "params": [qty, id]})
        if not ok:
            return "ERROR " + err
        ok, after, err = self.tool("sqlite.query", {
            "sql": "SELECT stock FROM items WHERE id = ?", "params": [id]})
        if not ok:
            return "ERROR " + err
        path = "ship-%d.txt" % id
        ok1, _, e1 = self.tool("file.write", {"path": path, "content": text_of(after)})
        ok2, check_, e2 = self.tool("file.read", {"path": path})
        if not (ok1 and ok2):
            return "ERROR file: " + e1 + e2
        return text_of(after) + "|" + text_of(check_)

    def gated(self, a, b, gate, use_gate):
        guess, entropy = self.generate("What is %d + %d?" % (a, b), 6)
        # Text only (entropy None): nothing to gate on, only the format check.
        unsure = use_gate and entropy is not None and entropy > gate
        if unsure or not re.search(r"^[0-9]+$", guess):
            ok, look, err = self.tool("sqlite.query", {"sql": "SELECT ? + ? AS total",
                                                       "params": [a, b]})
            if not ok:
                return "ERROR " + err
            return text_of(look)
        return guess


def run_external(args, url, model, workflow, tasks, workdir, faults):
    server = ToolServer(os.path.join(workdir, "bench.db"), os.path.join(workdir, "files"),
                        faults)
    results = []
    try:
        tools = RemoteTools(server.port, args.propagate_deadline)
        for task in tasks:
            controller = Controller(url, model, tools, args.external_logprobs)
            start = time.monotonic()
            try:
                value = getattr(controller, workflow)(**task)
            except Exception as e:  # an HTTP failure fails the task
                value = "ERROR controller: %s" % e
            results.append({"value": value, "returned_ok": check(workflow, task, value),
                            "seconds": time.monotonic() - start, "steps": controller.steps,
                            "error": value.startswith("ERROR"),
                            "prompt_tokens": controller.prompt_tokens,
                            "reused_tokens": controller.reused_tokens})
    finally:
        server.close()
    return results


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_server(args):
    port = free_port()
    # One request at a time, as the internal executor runs: the comparison is
    # of one agent loop, and the single-sequence prefix cache reuses any
    # common prefix (the batch pool only whole 64-token blocks).
    cmd = [args.treni, "serve", args.model, "--device", args.device, "--host", "127.0.0.1",
           "--port", str(port), "--max-seq", str(args.max_seq), "--max-num-seqs", "1"]
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
    n = len(results)
    return {"tasks": n,
            "success": sum(r["ok"] for r in results) / n,
            "error_rate": sum(r["error"] for r in results) / n,
            "double_applied": sum(r["double"] for r in results),
            "steps_mean": statistics.mean(r["steps"] for r in results),
            # KV-cache reuse: internal from the trace, external from the
            # responses' usage; None when the binary does not report it
            "prompt_tokens": sum(r["prompt_tokens"] for r in results),
            "reused_prompt_tokens": sum_known(r["reused_tokens"] for r in results),
            "mean_ms": 1000 * statistics.mean(lat),
            "p50_ms": 1000 * statistics.median(lat),
            "p90_ms": 1000 * lat[min(n - 1, int(0.9 * n))],
            "max_ms": 1000 * lat[-1]}


def run_round(args, name, url, served, workflow, tasks, faults):
    workdir = tempfile.mkdtemp(prefix="agent-bench-")
    try:
        os.makedirs(os.path.join(workdir, "files"))
        db = os.path.join(workdir, "bench.db")
        make_db(db, args.tasks)
        if name == "internal":
            results = run_internal(args, workflow, tasks, workdir, faults)
        else:
            results = run_external(args, url, served, workflow, tasks, workdir, faults)
        for r, (db_ok, double) in zip(results, final_state(workflow, tasks, db)):
            r["ok"] = r["returned_ok"] and db_ok
            r["double"] = double
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


HEADER = ("| profile | workflow | gate | internal mean / p50 / p90 ms | external mean / p50 / p90 ms"
          " | ext/int (mean) | success int / ext | errors int / ext | steps int / ext"
          " | double int / ext | KV reused int / ext |")
COLUMNS = HEADER.count("|") - 1


def reuse_cell(side):
    """'R of P' prompt tokens reused, 'n/a of P' when unknown."""
    reused = side["reused_prompt_tokens"]
    return "%s of %d" % ("n/a" if reused is None else reused, side["prompt_tokens"])


def row_line(row):
    i, e = row["internal"], row["external"]
    return ("| %s | %s | %s | %.1f / %.1f / %.1f | %.1f / %.1f / %.1f | %.2fx | %.0f%% / %.0f%% "
            "| %.0f%% / %.0f%% | %.2f / %.2f | %d / %d | %s / %s |" % (
                row["profile"], row["workflow"], row["gate"], i["mean_ms"], i["p50_ms"],
                i["p90_ms"], e["mean_ms"], e["p50_ms"], e["p90_ms"],
                e["mean_ms"] / max(i["mean_ms"], 1e-9), 100 * i["success"], 100 * e["success"],
                100 * i["error_rate"], 100 * e["error_rate"], i["steps_mean"], e["steps_mean"],
                i["double_applied"], e["double_applied"], reuse_cell(i), reuse_cell(e)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--treni", default="build/bin/treni")
    p.add_argument("--model", default="test/fixtures/qwen2")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--tokenizer", default="",
                   help="tokenizer directory for models without one (both sides)")
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--max-seq", type=int, default=None,
                   help="KV cache length (default: 1024, or the model's "
                        "max_position_embeddings when smaller: treni refuses more)")
    p.add_argument("--repeat", type=int, default=3,
                   help="rounds per (profile, workflow, gate); the two sides alternate "
                        "which goes first; per-task numbers are pooled")
    p.add_argument("--profiles", default="baseline,stress")
    p.add_argument("--workflows", default="retrieval,state,gated")
    p.add_argument("--gate-variants", default="on,off",
                   help="the uncertainty ablation: `gated` with its entropy gate on / off")
    p.add_argument("--gate", type=float, default=0.5, help="max-entropy gate (nats)")
    p.add_argument("--gated-tasks", type=int, default=0,
                   help="distinct tasks for `gated` (default: --tasks); with a greedy model "
                        "the answer quality varies over tasks, not over rounds")
    p.add_argument("--external-logprobs", action="store_true",
                   help="the controller asks for top_logprobs and gates on their entropy "
                        "(default: text only, as the issue's external controller)")
    p.add_argument("--propagate-deadline", action="store_true",
                   help="the controller sends its 350 ms deadline to the tool server, "
                        "which honours it as the in-process registry does")
    p.add_argument("--json", help="write all numbers here")
    p.add_argument("--table", help="write the markdown table here")
    args = p.parse_args()
    if args.max_seq is None:
        with open(os.path.join(args.model, "config.json")) as f:
            args.max_seq = min(1024, json.load(f).get("max_position_embeddings", 1024))

    server, url, served = start_server(args)
    rows, unknown = [], set()
    print(HEADER + "\n" + "|---" * COLUMNS + "|", flush=True)
    try:
        for profile in args.profiles.split(","):
            faults = STRESS if profile == "stress" else None
            for workflow in args.workflows.split(","):
                variants = args.gate_variants.split(",") if workflow == "gated" else ["-"]
                for variant in variants:
                    n = args.gated_tasks if workflow == "gated" and args.gated_tasks else (
                        args.tasks)
                    tasks = tasks_for(workflow, n, variant, args.gate)
                    pooled = {"internal": [], "external": []}
                    for round_ in range(args.repeat):
                        order = ("internal", "external") if round_ % 2 == 0 else (
                            "external", "internal")
                        for name in order:
                            pooled[name] += run_round(args, name, url, served, workflow, tasks,
                                                      faults)
                    row = {"profile": profile, "workflow": workflow, "gate": variant,
                           "repeats": args.repeat}
                    for name in pooled:
                        row[name] = summarize(pooled[name])
                        row[name]["values"] = [r["value"] for r in pooled[name][:len(tasks)]]
                    rows.append(row)
                    print(row_line(row), flush=True)
                    for name in pooled:
                        if row[name]["reused_prompt_tokens"] is None and name not in unknown:
                            unknown.add(name)
                            print("agent_bench: the %s side's %s reports no KV-cache reuse "
                                  "(%s): %s was built before prefix caching; 'n/a', not 0" % (
                                      name, "trace" if name == "internal" else "responses",
                                      "no reused_tokens" if name == "internal" else
                                      "no usage.prompt_tokens_details.cached_tokens",
                                      args.treni), file=sys.stderr, flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    table = HEADER + "\n" + "|---" * COLUMNS + "|\n" + "\n".join(row_line(r) for r in rows) + "\n"
    if args.table:
        with open(args.table, "w") as f:
            f.write(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"treni": args.treni, "device": args.device, "model": args.model,
                       "tasks": args.tasks,
                       "gated_tasks": args.gated_tasks or args.tasks,
                       "repeat": args.repeat, "gate": args.gate, "stress": STRESS,
                       "timeout_s": TIMEOUT_S, "retries": RETRIES,
                       "external_gating": "top-20 logprobs" if args.external_logprobs
                       else "none (text only)",
                       "propagate_deadline": args.propagate_deadline, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
