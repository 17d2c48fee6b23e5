#!/usr/bin/env python3
"""Prefix caching on `treni serve`: the same requests with and without it.

Standard library only. Starts `treni serve` twice, with the default (prefix
caching on) and with `--no-prefix-cache`, one after the other, and sends
each the same scenarios (greedy, temperature 0):

  chat    a --turns-turn chat (default 4) under a long system prompt
          (--system-tokens, default ~900, deterministic filler text): each
          turn appends the previous assistant reply and a new user message,
          so every turn shares the whole conversation so far with the
          previous one;
  shared  --shared independent requests (default 8): the same system
          prompt, a different short user question each.

Before each scenario the server gets a raw /v1/completions request that
shares no token with the chat prompts, so the scenario's first request
starts cold on both servers (its prefill is the whole prompt); the
calibration requests before it are the warm-up. Per request it records the
server's `awareness.timing` (ttft_ms = queue + prefill, prefill_ms),
`usage.prompt_tokens_details.cached_tokens` and the client's wall time, and
checks that the generated text is the same with and without the cache
(a mismatch count; on the CPU it must be 0). Exit status 1 when a check
fails: a mismatch on the CPU, cached tokens reported with the cache off,
none at all with it on, or a request that failed.

    python3 bench/prefix_bench.py [--treni build/bin/treni] [--model DIR]
        [--device cpu|gpu] [--tokenizer DIR] [--system-tokens 900]
        [--max-tokens 32] [--turns 4] [--shared 8] [--repeat 3] [--max-seq N]
        [--json OUT]

The fixture model (test/fixtures/qwen2) has 512 positions: use
--system-tokens 250 --max-tokens 8 --max-seq 512 with it.
"""
import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from load_test import request  # noqa: E402

MODEL_NAME = "prefix-bench"
RESET_PROMPT = "0 1 2 3"  # raw completion: shares no token with a chat prompt

WORDS = ("pump valve operator log pressure line shift report sensor reading alarm "
         "tank flow limit check crew manual station filter panel cable meter "
         "gauge schedule backup supply circuit motor relay record inspection").split()
USER_TURNS = ["Summarize note 3 in one sentence.",
              "What does note 7 say about the valve?",
              "Which notes mention the alarm?",
              "List the limits from notes 2 and 5.",
              "What should the crew check first?",
              "Is the backup supply mentioned?",
              "Which station has the oldest filter?",
              "Give the schedule of note 9."]


def filler(words, seed=20261130):
    """`words` words of deterministic notes ('Note 1. The pump ...')."""
    rng = random.Random(seed)
    out, note = [], 0
    while len(out) < words:
        note += 1
        sentence = ["Note %d." % note, "The"] + [rng.choice(WORDS)
                                                 for _ in range(rng.randint(8, 16))]
        sentence[-1] += " %d." % rng.randint(1, 999)
        out += sentence
    return " ".join(out[:words])


class Server:
    """A `treni serve` process on a free loopback port."""

    def __init__(self, args, prefix_cache):
        cmd = [args.treni, "serve", args.model, "--port", "0", "--device", args.device,
               "--max-seq", str(args.max_seq), "--served-model-name", MODEL_NAME]
        if args.tokenizer:
            cmd += ["--tokenizer", args.tokenizer]
        if not prefix_cache:
            cmd.append("--no-prefix-cache")
        try:
            self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, text=True)
        except OSError as e:
            sys.exit("prefix_bench: cannot start %s: %s" % (args.treni, e))
        self.log, self.port = [], None
        deadline = time.time() + 600  # a first GPU load compiles its kernels
        while self.port is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            match = re.search(r"listening on http://[^:]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
        if self.port is None:
            self.proc.kill()
            sys.exit("prefix_bench: the server did not start: %s\n%s" % (
                " ".join(cmd), "".join(self.log)))
        threading.Thread(target=lambda: [self.log.append(l) for l in self.proc.stderr],
                         daemon=True).start()

    def post(self, path, body):
        """The response object; exits naming the request when it is not 200."""
        status, data, seconds, _ = request(self.port, "POST", path, json.dumps(body).encode())
        if status != 200:
            sys.exit("prefix_bench: %s answered %d: %s" % (path, status, data[:500]))
        out = json.loads(data)
        out["_client_ms"] = seconds * 1e3
        return out

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def prompt_tokens(server, text):
    """Tokens of `text` as a raw completion prompt."""
    body = server.post("/v1/completions", {"model": MODEL_NAME, "prompt": text,
                                           "max_tokens": 1, "temperature": 0})
    return body["usage"]["prompt_tokens"]


def system_prompt(server, target):
    """Filler text of about `target` tokens (measured by the server)."""
    words = max(1, min(32, target // 8))  # a short probe first: it must fit --max-seq
    for _ in range(4):
        tokens = prompt_tokens(server, filler(words))
        if abs(tokens - target) <= max(4, target // 50):
            break
        words = max(1, round(words * target / max(tokens, 1)))
    text = filler(words)
    return text, prompt_tokens(server, text)


def record(body):
    """What one chat response tells: text and the numbers per request."""
    timing = body.get("awareness", {}).get("timing", {})
    details = body.get("usage", {}).get("prompt_tokens_details") or {}
    choice = body["choices"][0]
    return {"text": choice["message"]["content"] or "",
            "logprobs": [t["logprob"] for t in (choice.get("logprobs") or {}).get("content") or []],
            "prompt_tokens": body["usage"]["prompt_tokens"],
            "cached_tokens": details.get("cached_tokens"),
            "ttft_ms": timing.get("ttft_ms"), "prefill_ms": timing.get("prefill_ms"),
            "client_ms": body["_client_ms"]}


def chat(server, system, args):
    messages = [{"role": "system", "content": system}]
    out = []
    for turn in range(args.turns):
        messages.append({"role": "user", "content": USER_TURNS[turn % len(USER_TURNS)]})
        r = record(server.post("/v1/chat/completions", {
            "model": MODEL_NAME, "messages": messages, "max_tokens": args.max_tokens,
            "temperature": 0, "logprobs": True}))
        messages.append({"role": "assistant", "content": r["text"]})
        out.append(r)
    return out


def shared(server, system, args):
    return [record(server.post("/v1/chat/completions", {
        "model": MODEL_NAME, "max_tokens": args.max_tokens, "temperature": 0, "logprobs": True,
        "messages": [{"role": "system", "content": system},
                     {"role": "user", "content": USER_TURNS[i % len(USER_TURNS)] +
                      " (question %d)" % (i + 1)}]}))
        for i in range(args.shared)]


SCENARIOS = {"chat": chat, "shared": shared}


def run_server(args, prefix_cache, system):
    """{scenario: [[record per request] per repeat]} and the system prompt."""
    server = Server(args, prefix_cache)
    try:
        if system is None:  # calibrated on the first server, reused on the second
            system = system_prompt(server, args.system_tokens)
        else:
            prompt_tokens(server, system[0])  # the same warm-up
        results = {name: [] for name in SCENARIOS}
        for _ in range(args.repeat):
            for name, scenario in SCENARIOS.items():
                server.post("/v1/completions", {"model": MODEL_NAME, "prompt": RESET_PROMPT,
                                                "max_tokens": 1, "temperature": 0})
                results[name].append(scenario(server, system[0], args))
        if server.proc.poll() is not None:
            sys.exit("prefix_bench: the server exited:\n" + "".join(server.log[-20:]))
        return results, system
    finally:
        server.close()


def median_of(records, key):
    values = [r[key] for r in records if r[key] is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=2):
    return "n/a" if value is None else "%.*f" % (digits, value)


def summarize(name, on, off):
    """One row per scenario: medians over every request of every repeat."""
    flat_on = [r for run in on for r in run]
    flat_off = [r for run in off for r in run]
    # Requests after the first of each run: the ones that can reuse.
    warm_on = [r for run in on for r in run[1:]]
    warm_off = [r for run in off for r in run[1:]]
    mismatches = sum(a["text"] != b["text"] for a, b in zip(flat_on, flat_off))
    # Where the texts agree: how far the chosen tokens' logprobs moved.
    deltas = [abs(x - y) for a, b in zip(flat_on, flat_off) if a["text"] == b["text"]
              for x, y in zip(a["logprobs"], b["logprobs"])]
    unknown = any(r["cached_tokens"] is None for r in flat_on + flat_off)
    return {
        "scenario": name, "requests": len(flat_on),
        "ttft_ms_on": median_of(flat_on, "ttft_ms"), "ttft_ms_off": median_of(flat_off, "ttft_ms"),
        "warm_ttft_ms_on": median_of(warm_on, "ttft_ms"),
        "warm_ttft_ms_off": median_of(warm_off, "ttft_ms"),
        "prefill_ms_on": median_of(flat_on, "prefill_ms"),
        "prefill_ms_off": median_of(flat_off, "prefill_ms"),
        "client_ms_on": median_of(flat_on, "client_ms"),
        "client_ms_off": median_of(flat_off, "client_ms"),
        "prompt_tokens": sum(r["prompt_tokens"] for r in flat_on),
        "cached_tokens_on": None if unknown else sum(r["cached_tokens"] for r in flat_on),
        "cached_tokens_off": None if unknown else sum(r["cached_tokens"] for r in flat_off),
        "mismatches": mismatches,
        "max_logprob_delta": max(deltas, default=0.0),
        "repeat_mismatches_on": sum(a["text"] != b["text"] for run in on[1:]
                                    for a, b in zip(on[0], run)),
    }


def table(rows):
    lines = ["| scenario | requests | median TTFT ms on / off | warm TTFT ms on / off"
             " | median client ms on / off | cached tokens on / off (of prompt)"
             " | text mismatches | max logprob delta |",
             "|---" * 8 + "|"]
    for s in rows:
        lines.append("| %s | %d | %s / %s | %s / %s | %s / %s | %s / %s (of %d) | %d | %.2g |" % (
            s["scenario"], s["requests"], fmt(s["ttft_ms_on"]), fmt(s["ttft_ms_off"]),
            fmt(s["warm_ttft_ms_on"]), fmt(s["warm_ttft_ms_off"]), fmt(s["client_ms_on"], 1),
            fmt(s["client_ms_off"], 1), fmt(s["cached_tokens_on"], 0),
            fmt(s["cached_tokens_off"], 0), s["prompt_tokens"], s["mismatches"],
            s["max_logprob_delta"]))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--treni", default=os.path.join(ROOT, "build", "bin", "treni"))
    p.add_argument("--model", default=os.path.join(ROOT, "test", "fixtures", "qwen2"))
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--tokenizer", default="", help="tokenizer directory (default: the model's)")
    p.add_argument("--system-tokens", type=int, default=900,
                   help="length of the shared system prompt, about (measured by the server)")
    p.add_argument("--max-tokens", type=int, default=32, help="per request")
    p.add_argument("--turns", type=int, default=4, help="chat turns")
    p.add_argument("--shared", type=int, default=8, help="independent shared-prompt requests")
    p.add_argument("--repeat", type=int, default=3, help="runs of each scenario per server")
    p.add_argument("--max-seq", type=int, default=0,
                   help="the servers' --max-seq (default: room for the whole chat)")
    p.add_argument("--json", help="write every request's numbers here")
    args = p.parse_args()
    for name in ("system_tokens", "turns", "shared", "repeat", "max_tokens"):
        if getattr(args, name) < 1:
            p.error("--%s must be at least 1" % name.replace("_", "-"))
    if not args.max_seq:
        args.max_seq = args.system_tokens + args.turns * (args.max_tokens + 40) + 64

    on, system = run_server(args, True, None)
    print("system prompt: %d tokens (%d words); %d requests per server" % (
        system[1], len(system[0].split()),
        args.repeat * (args.turns + args.shared)), flush=True)
    off, _ = run_server(args, False, system)
    rows = [summarize(name, on[name], off[name]) for name in SCENARIOS]

    failures = []
    for s in rows:
        if s["cached_tokens_on"] is None:
            failures.append("%s: no usage.prompt_tokens_details.cached_tokens (a treni built "
                            "before prefix caching?)" % s["scenario"])
            continue
        if s["cached_tokens_off"]:
            failures.append("%s: %d cached tokens reported with --no-prefix-cache" % (
                s["scenario"], s["cached_tokens_off"]))
        if not s["cached_tokens_on"]:
            failures.append("%s: no prompt token reused with the cache on" % s["scenario"])
        if s["mismatches"] and args.device == "cpu":
            failures.append("%s: %d of %d texts differ with and without the cache (the CPU "
                            "must give the same)" % (s["scenario"], s["mismatches"],
                                                     s["requests"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"treni": args.treni, "model": args.model, "device": args.device,
                       "system_tokens": system[1], "max_tokens": args.max_tokens,
                       "turns": args.turns, "shared": args.shared, "repeat": args.repeat,
                       "max_seq": args.max_seq, "summary": rows,
                       "requests": {"on": on, "off": off}, "failures": failures}, f, indent=1)
    print(table(rows))
    for failure in failures:
        print("prefix_bench: FAIL " + failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
