#!/usr/bin/env python3
"""Load test for `treni serve`: concurrent valid and invalid requests on loopback.

Standard library only. Starts the server, records a reference answer for
every distinct valid request by sending them one at a time, then sends a
bounded mix of valid requests (chat, streamed chat, completions) and invalid
ones (malformed JSON, wrong types, unknown model, empty messages, invalid
UTF-8, absurd max_tokens, oversized body, wrong method/path) from many
threads at once, and checks:

  - no crash: the server process is alive and /health answers at the end,
    and it exits 0 on SIGTERM;
  - no lost or mixed-up responses: every valid request gets 200 and exactly
    its reference answer (text and every token's logprob; each request has
    its own marker in the prompt and its own seed), every invalid one its
    expected 4xx with an OpenAI error object;
  - memory: the server's RSS (/proc/PID/status) after a warm-up and after
    the run.

Reports requests/s, p50/p99 latency, p50/p99 time to first token (streamed
requests: first content byte at the client; all: the server's awareness
ttft_ms), and the RSS numbers; --json prints them as one JSON line. Exit
status 1 on any failed check.

    python3 bench/load_test.py [--binary build/bin/treni] [--model test/fixtures/qwen2]
                               [--requests 400] [--concurrency 16] [--device cpu]
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def request(port, method, path, body=None, stream=False, timeout=120):
    """(status, body bytes, seconds, seconds to the first content byte or None)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Connection": "close"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        first = None
        if stream and resp.status == 200:
            data = b""
            while True:
                piece = resp.read1(65536)  # de-chunked, as it arrives
                if not piece:
                    break
                data += piece
                if first is None and re.search(rb'"content":"[^"]', data):
                    first = time.perf_counter() - start
        else:
            data = resp.read()
        return resp.status, data, time.perf_counter() - start, first
    finally:
        conn.close()


def sse_answer(data):
    """(text, logprobs, awareness) of an SSE chat body."""
    text, logprobs, awareness = "", [], None
    for line in data.decode("utf-8", "replace").split("\n"):
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if "awareness" in chunk:
            awareness = chunk["awareness"]
        for choice in chunk.get("choices", []):
            text += choice.get("delta", {}).get("content") or ""
            for token in (choice.get("logprobs") or {}).get("content") or []:
                logprobs.append(token["logprob"])
    return text, logprobs, awareness


def answer_of(kind, data):
    """The comparable answer of a 200 response, and the server's TTFT (ms)."""
    if kind == "stream":
        text, logprobs, awareness = sse_answer(data)
        return (text, logprobs), awareness["timing"]["ttft_ms"] if awareness else None
    body = json.loads(data)
    choice = body["choices"][0]
    if kind == "chat":
        return ((choice["message"]["content"],
                 [t["logprob"] for t in choice["logprobs"]["content"]]),
                body["awareness"]["timing"]["ttft_ms"])
    return ((choice["text"], choice["logprobs"]["token_logprobs"]),
            body["awareness"]["timing"]["ttft_ms"])


def valid_requests(count, max_tokens):
    """`count` distinct valid requests: (kind, path, body)."""
    out = []
    for i in range(count):
        marker = f"request {i} of the load test:" + " the plan" * (i % 7)
        kind = ("chat", "stream", "completion")[i % 3]
        if kind == "completion":
            body = {"model": "MODEL", "prompt": marker, "max_tokens": max_tokens,
                    "temperature": 1.0, "seed": 1000 + i, "logprobs": 1}
            out.append((kind, "/v1/completions", body))
        else:
            body = {"model": "MODEL", "messages": [{"role": "user", "content": marker}],
                    "max_tokens": max_tokens, "temperature": 1.0, "seed": 1000 + i,
                    "logprobs": True, "stream": kind == "stream"}
            out.append((kind, "/v1/chat/completions", body))
    return out


def invalid_requests(model, max_body):
    """(name, method, path, body bytes, expected status)."""
    chat = lambda extra: json.dumps(dict({"model": model, "messages": [
        {"role": "user", "content": "hi"}]}, **extra)).encode()
    return [
        ("malformed json", "POST", "/v1/chat/completions", b'{"model": "x", "messages": [', 400),
        ("wrong type", "POST", "/v1/chat/completions", chat({"temperature": "hot"}), 400),
        ("unknown model", "POST", "/v1/chat/completions", chat({"model": "gpt-4o"}), 404),
        ("empty messages", "POST", "/v1/chat/completions", chat({"messages": []}), 400),
        ("invalid utf-8", "POST", "/v1/chat/completions",
         b'{"model": "' + model.encode() + b'", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400),
        ("absurd max_tokens", "POST", "/v1/chat/completions", chat({"max_tokens": 10**12}), 400),
        ("oversized body", "POST", "/v1/chat/completions", b" " * (max_body + 1024), 413),
        ("wrong method", "GET", "/v1/chat/completions", None, 405),
        ("wrong path", "POST", "/v1/nope", b"{}", 404),
        ("no prompt", "POST", "/v1/completions", json.dumps({"model": model}).encode(), 400),
    ]


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "bin", "treni"))
    parser.add_argument("--model", default=os.path.join(ROOT, "test", "fixtures", "qwen2"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=400, help="requests under load")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--distinct", type=int, default=24, help="distinct valid requests")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--invalid-share", type=float, default=0.3)
    parser.add_argument("--max-seq", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    max_body_kib = 256
    server = subprocess.Popen(
        [args.binary, "serve", args.model, "--port", "0", "--device", args.device,
         "--max-seq", str(args.max_seq), "--queue-size", str(max(64, 2 * args.concurrency)),
         "--max-body-kib", str(max_body_kib), "--served-model-name", "load-test"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    port = None
    log = []
    deadline = time.time() + 300
    while port is None and time.time() < deadline:
        line = server.stderr.readline()
        if not line:
            break
        log.append(line)
        match = re.search(r"listening on http://[^:]+:(\d+)", line)
        if match:
            port = int(match.group(1))
    if port is None:
        server.kill()
        sys.exit("load_test: the server did not start:\n" + "".join(log))
    threading.Thread(target=lambda: [log.append(l) for l in server.stderr], daemon=True).start()

    failures = []
    model = "load-test"
    valid = valid_requests(args.distinct, args.max_tokens)
    for _, _, body in valid:
        body["model"] = model
    invalid = invalid_requests(model, max_body_kib * 1024)

    # References, one at a time (also the warm-up).
    references = []
    for kind, path, body in valid:
        status, data, _, _ = request(port, "POST", path, json.dumps(body).encode(),
                                     stream=kind == "stream")
        if status != 200:
            failures.append(f"reference {path} answered {status}: {data[:200]!r}")
            references.append(None)
            continue
        references.append(answer_of(kind, data)[0])
    rss_before = rss_kib(server.pid)

    # The load: a fixed, interleaved schedule of valid and invalid requests.
    schedule = []
    step = max(1, round(1 / args.invalid_share)) if args.invalid_share > 0 else 0
    for i in range(args.requests):
        if step and i % step == step - 1:
            schedule.append(("invalid", (i // step) % len(invalid)))
        else:
            schedule.append(("valid", i % len(valid)))
    lock = threading.Lock()
    stats = {"ok": 0, "mixed": 0, "lost": 0, "wrong_status": 0, "rejected_429": 0}
    latencies, client_ttfts, server_ttfts = [], [], []

    def run(item):
        what, index = item
        try:
            if what == "invalid":
                name, method, path, body, expected = invalid[index]
                status, data, seconds, _ = request(port, method, path, body)
                error = json.loads(data).get("error") if data else None
                with lock:
                    if status == expected and isinstance(error, dict) and \
                            {"message", "type", "param", "code"} <= error.keys():
                        stats["ok"] += 1
                    else:
                        stats["wrong_status"] += 1
                        failures.append(f"{name}: {status} (expected {expected}) {data[:200]!r}")
                return
            kind, path, body = valid[index]
            status, data, seconds, first = request(port, "POST", path, json.dumps(body).encode(),
                                                   stream=kind == "stream")
            with lock:
                if status == 429:
                    stats["rejected_429"] += 1
                    return
                if status != 200:
                    stats["lost"] += 1
                    failures.append(f"{kind} #{index}: HTTP {status} {data[:200]!r}")
                    return
                got, server_ttft = answer_of(kind, data)
                latencies.append(seconds)
                if server_ttft is not None:
                    server_ttfts.append(server_ttft / 1e3)
                if first is not None:
                    client_ttfts.append(first)
                if got == references[index]:
                    stats["ok"] += 1
                else:
                    stats["mixed"] += 1
                    failures.append(f"{kind} #{index}: answer differs from its reference")
        except Exception as error:  # a dropped connection is a lost response
            with lock:
                stats["lost"] += 1
                failures.append(f"{item}: {type(error).__name__}: {error}")

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(run, schedule))
    elapsed = time.perf_counter() - start
    rss_after = rss_kib(server.pid) if server.poll() is None else 0

    alive = server.poll() is None
    health = None
    if alive:
        try:
            health, _, _, _ = request(port, "GET", "/health")
        except Exception:
            health = None
    server.send_signal(signal.SIGTERM)
    try:
        exit_code = server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        exit_code = "hung"
    if not alive or health != 200:
        failures.append(f"server crashed or stopped answering (alive={alive}, health={health})")
    if exit_code != 0:
        failures.append(f"server exit status after SIGTERM: {exit_code}")
    if rss_after - rss_before > 64 * 1024:
        failures.append(f"server memory grew by {(rss_after - rss_before) // 1024} MiB under load")

    report = {
        "requests": args.requests, "concurrency": args.concurrency,
        "valid": sum(1 for s in schedule if s[0] == "valid"),
        "invalid": sum(1 for s in schedule if s[0] == "invalid"),
        "max_tokens": args.max_tokens, "device": args.device,
        "seconds": round(elapsed, 3), "requests_per_s": round(args.requests / elapsed, 1),
        "latency_p50_ms": round(percentile(latencies, 50) * 1e3, 2),
        "latency_p99_ms": round(percentile(latencies, 99) * 1e3, 2),
        "ttft_stream_client_p50_ms": round(percentile(client_ttfts, 50) * 1e3, 2),
        "ttft_stream_client_p99_ms": round(percentile(client_ttfts, 99) * 1e3, 2),
        "ttft_server_p50_ms": round(percentile(server_ttfts, 50) * 1e3, 2),
        "ttft_server_p99_ms": round(percentile(server_ttfts, 99) * 1e3, 2),
        "rss_before_kib": rss_before, "rss_after_kib": rss_after,
        "crashed": not alive, "exit_code": exit_code, **stats,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:28} {value}")
    if failures:
        print(f"load_test: {len(failures)} failures", file=sys.stderr)
        for failure in failures[:20]:
            print("  " + failure, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
