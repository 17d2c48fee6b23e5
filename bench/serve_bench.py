#!/usr/bin/env python3
"""Serving benchmark for `treni serve`: throughput and latency under load (issue 15).

In the manner of vLLM's benchmark_serving; standard library only (matplotlib
only for the optional plot). Starts `treni serve` (or targets --url) and per
concurrency level sends streamed /v1/completions (temperature 0, a different
prompt each): closed loop by default (that many threads, back to back), or
open loop with --request-rate R (seeded Poisson arrivals, at most
`concurrency` in flight). Prompts are --input-len random token ids when the
server takes them (a probe's 400 names the vocabulary size), else random
words. --ignore-eos sends vLLM's `ignore_eos` (Treni honours it); tokens
are counted as streamed and as usage.completion_tokens. Reports per level requests/s, output tokens/s, TTFT,
inter-token and end-to-end latency p50/p99 (client clock), 429s apart from
other errors, and whether every request finished: `SERVE` rows on stdout,
serve_bench.json and serve_bench.png (with matplotlib) under --out.
docs/user-guide.md ("Serving benchmark") has the details.

    python3 bench/serve_bench.py [--binary build/bin/treni] [--model DIR]
        [--device cpu|gpu] [--server-arg=--max-seq=8192 ...] | [--url http://HOST:PORT]
        [--concurrency 1,4,16,64,256] [--requests-per-level N] [--request-rate R]
        [--input-len 256] [--output-len 128] [--timeout 120] [--max-duration 1800]
        [--out DIR]
    python3 bench/serve_bench.py --plot-only DIR/serve_bench.json [--out DIR]

Exit status 1 when a request failed other than by a 429, 130 on Ctrl-C.
"""
import argparse
import datetime
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("the plan model token cache batch server time river stone light paper "
         "number window garden music orange simple yellow market winter table").split()


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# ---------------------------------------------------------------- the server
def start_server(args, queue_size):
    """(process, port, startup lines): `treni serve` on a free port, once /health answers."""
    cmd = [args.binary, "serve"] + ([args.model] if args.model else []) + [
        "--port", "0", "--device", args.device]
    if not any(a.startswith("--queue-size") for a in args.server_arg):
        cmd += ["--queue-size", str(queue_size)]  # the default (16) would reject most of a sweep
    if not any(a.startswith("--max-connections-per-client") for a in args.server_arg):
        # Every client of the sweep is this process: the default (64) answers
        # the connections past it 503.
        cmd += ["--max-connections-per-client", str(queue_size)]
    cmd += args.server_arg
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    log, listening = [], threading.Event()

    def read_log():  # a thread, so that a silent server cannot block the deadline
        for line in server.stderr:
            log.append(line.rstrip("\n"))
            if "listening on http://" in line:
                listening.set()
    threading.Thread(target=read_log, daemon=True).start()
    deadline = time.time() + args.startup_timeout
    while not listening.wait(0.2):
        if server.poll() is not None or time.time() > deadline:
            stop_server(server)
            sys.exit("serve_bench: the server did not start:\n" + "\n".join(log))
    port = int(re.search(r"listening on http://[^ ]*:(\d+)", next(
        l for l in log if "listening on http://" in l)).group(1))
    while time.time() < deadline:
        try:
            if get_json("127.0.0.1", port, "/health", 5)[0] == 200:
                return server, port, list(log)
        except OSError:
            pass
        time.sleep(0.2)
    stop_server(server)
    sys.exit("serve_bench: /health did not answer 200")


def stop_server(server):
    """SIGTERM (in-flight requests finish, streams are cut), then kill after 30 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def get_json(host, port, path, timeout, body=None):
    """(status, parsed JSON or None) of a GET, or a POST when body is given."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request("POST" if body is not None else "GET", path,
                     body=json.dumps(body) if body is not None else None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, None
    finally:
        conn.close()


def probe_vocab(host, port, model, timeout):
    """The vocabulary size when the server takes token-id prompts, else None: an id
    past any vocabulary gets a 400 naming its size."""
    try:
        status, body = get_json(host, port, "/v1/completions", timeout,
                                {"model": model, "prompt": [2**31 - 1], "max_tokens": 1})
    except OSError:
        return None
    message = ((body or {}).get("error") or {}).get("message", "") if status == 400 else ""
    match = re.search(r"outside the vocabulary \((\d+)\)", message)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------- one request
def stream_request(host, port, body, timeout):
    """Sends one streamed completion and reads its SSE stream. A dict: status,
    error (None when it finished: finish_reason and [DONE] seen), ttft, gaps
    between text chunks, e2e (seconds), tokens streamed, usage tokens."""
    out = dict(status=None, error=None, ttft=None, gaps=[], e2e=None, tokens=0,
               usage_tokens=None, prompt_tokens=None)
    start = time.perf_counter()
    deadline = start + timeout
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(body),
                     headers={"Content-Type": "application/json", "Connection": "close"})
        resp = conn.getresponse()
        out["status"] = resp.status
        if resp.status != 200:
            resp.read()
            out["error"] = str(resp.status)
            return out
        buffer, data_lines, last_text, finished, done = b"", [], None, False, False
        while not done:
            if time.perf_counter() > deadline:
                out["error"] = "timeout"
                return out
            piece = resp.read1(65536)  # de-chunked, as it arrives
            now = time.perf_counter()
            if not piece:
                break
            buffer += piece
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.rstrip(b"\r").decode("utf-8", "replace")
                if line.startswith(":"):  # an SSE comment (keep-alive)
                    continue
                if line.startswith("data:"):
                    data_lines.append(line[5:].removeprefix(" "))
                    continue
                if line or not data_lines:  # other fields (event:, id:) or a stray blank
                    continue
                payload, data_lines = "\n".join(data_lines), []  # a blank line ends an event
                if payload == "[DONE]":
                    done = True
                    break
                chunk = json.loads(payload)
                if "error" in chunk:
                    out["error"] = "stream"
                    out.setdefault("error_message", str(chunk["error"].get("message"))[:300])
                    continue
                if chunk.get("usage"):
                    out["usage_tokens"] = chunk["usage"].get("completion_tokens")
                    out["prompt_tokens"] = chunk["usage"].get("prompt_tokens")
                for choice in chunk.get("choices") or []:
                    if choice.get("finish_reason") is not None:
                        finished = True
                    else:
                        out["tokens"] += 1  # one chunk per token (empty inside a UTF-8 character)
                    if choice.get("text"):
                        if last_text is None:
                            out["ttft"] = now - start
                        else:
                            out["gaps"].append(now - last_text)
                        last_text = now
        out["e2e"] = time.perf_counter() - start
        if out["error"] is None and not (finished and done):
            out["error"] = "stream"  # cut before finish_reason and [DONE]
    except (OSError, http.client.HTTPException, ValueError) as error:
        out["error"] = "timeout" if isinstance(error, TimeoutError) else "connection"
    finally:
        conn.close()
    return out


# ---------------------------------------------------------------- one level
def run_level(args, host, port, bodies, arrivals, concurrency, stop, run_deadline):
    """Runs the requests of one level on `concurrency` threads; request i is sent
    at arrivals[i] seconds after the start or later (all 0: closed loop)."""
    results, lock, order = [None] * len(bodies), threading.Lock(), iter(range(len(bodies)))
    start = time.perf_counter()

    def worker():
        while not stop.is_set():
            with lock:
                i = next(order, None)
            if i is None:
                return
            stop.wait(max(0.0, start + arrivals[i] - time.perf_counter()))
            left = run_deadline - time.perf_counter()
            if stop.is_set() or left <= 0:
                return  # results[i] stays None: not sent
            results[i] = stream_request(host, port, bodies[i], min(args.timeout, left))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # short joins, so that Ctrl-C reaches the main thread
    return results, time.perf_counter() - start


def summarize(results, seconds, concurrency, rate):
    ok = [r for r in results if r and r["error"] is None]
    errors, messages = {}, []
    for r in results:
        kind = "not_sent" if r is None else r["error"]
        if kind and kind != "429":
            errors[kind] = errors.get(kind, 0) + 1
        if r and r.get("error_message") and r["error_message"] not in messages and len(messages) < 3:
            messages.append(r["error_message"])
    usage = [r["usage_tokens"] for r in ok if r["usage_tokens"] is not None]
    ms = lambda values, p: None if percentile(values, p) is None else round(percentile(values, p) * 1e3, 3)
    ttfts = [r["ttft"] for r in ok if r["ttft"] is not None]
    gaps = [g for r in ok for g in r["gaps"]]
    e2es = [r["e2e"] for r in ok]
    tokens = sum(r["tokens"] for r in ok)
    prompt = [r["prompt_tokens"] for r in ok if r["prompt_tokens"] is not None]
    return dict(
        concurrency=concurrency, request_rate=rate, requests=len(results), completed=len(ok),
        rejected_429=sum(1 for r in results if r and r["error"] == "429"), errors=errors,
        error_messages=messages,
        all_finished=len(ok) == len(results), seconds=round(seconds, 3),
        request_throughput=round(len(ok) / seconds, 3) if seconds else None,
        output_tok_s=round(tokens / seconds, 2) if seconds else None,
        output_tok_s_usage=round(sum(usage) / seconds, 2) if seconds and len(usage) == len(ok) else None,
        output_tokens_streamed=tokens, output_tokens_usage=sum(usage) if usage else None,
        mean_output_tokens=round(tokens / len(ok), 2) if ok else None,
        mean_prompt_tokens=round(sum(prompt) / len(prompt), 1) if prompt else None,
        ttft_p50_ms=ms(ttfts, 50), ttft_p99_ms=ms(ttfts, 99),
        itl_p50_ms=ms(gaps, 50), itl_p99_ms=ms(gaps, 99),
        e2e_p50_ms=ms(e2es, 50), e2e_p99_ms=ms(e2es, 99))


# ---------------------------------------------------------------- report
def print_table(result):
    c = result["config"]
    where = result.get("device_name") or result.get("device") or result["url"]
    print(f"\nSERVE {result['model']} on {where} "
          f"({result['date']}), prompts {c['input_len']} {result['prompt_mode']}, "
          f"max_tokens {c['output_len']}, " + (f"Poisson {c['request_rate']} req/s"
                                                 if c.get("request_rate") else "closed loop"))
    print(f"SERVE {'conc':>5} {'reqs':>5} {'ok':>5} {'429':>4} {'err':>4} {'req/s':>8} {'tok/s':>9} "
          f"{'out/req':>7} {'ttft50':>8} {'ttft99':>8} {'itl50':>7} {'itl99':>7} "
          f"{'e2e50':>8} {'e2e99':>8} done")
    fmt = lambda v, w, d=1: f"{v:>{w}.{d}f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"
    for lv in result["levels"]:
        tok_s = lv["output_tok_s_usage"] if lv["output_tok_s_usage"] is not None else lv["output_tok_s"]
        print(f"SERVE {lv['concurrency']:>5} {lv['requests']:>5} {lv['completed']:>5} "
              f"{lv['rejected_429']:>4} {sum(lv['errors'].values()):>4} "
              f"{fmt(lv['request_throughput'], 8, 2)} {fmt(tok_s, 9)} {fmt(lv['mean_output_tokens'], 7)} "
              f"{fmt(lv['ttft_p50_ms'], 8)} {fmt(lv['ttft_p99_ms'], 8)} {fmt(lv['itl_p50_ms'], 7, 2)} "
              f"{fmt(lv['itl_p99_ms'], 7, 2)} {fmt(lv['e2e_p50_ms'], 8)} {fmt(lv['e2e_p99_ms'], 8)} "
              f"{'yes' if lv['all_finished'] else 'NO'}")
        if lv["errors"]:
            print(f"SERVE-ERRORS {lv['concurrency']}: {lv['errors']} {lv.get('error_messages', [])}")
    print("SERVE (ms; tok/s from usage.completion_tokens, else streamed chunks)")


def plot(result, out_dir):
    """serve_bench.png in out_dir; False when matplotlib is not importable."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    levels = [lv for lv in result["levels"] if lv["completed"]]
    if not levels:
        print("serve_bench: no level completed a request, nothing to plot")
        return True
    xs = [lv["concurrency"] for lv in levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.plot(xs, [lv["output_tok_s_usage"] or lv["output_tok_s"] for lv in levels], "-o",
              label="output tokens/s")
    left.set_ylabel("output tokens/s")
    twin = left.twinx()
    twin.plot(xs, [lv["request_throughput"] for lv in levels], "--s", color="C1", label="requests/s")
    twin.set_ylabel("requests/s")
    left.set_ylim(bottom=0)
    twin.set_ylim(bottom=0)
    left.set_title("Throughput")
    for key, label, style in (("ttft_p50_ms", "TTFT p50", "-o"), ("ttft_p99_ms", "TTFT p99", "--o"),
                              ("itl_p50_ms", "ITL p50", "-s"), ("itl_p99_ms", "ITL p99", "--s")):
        right.plot(xs, [lv[key] for lv in levels], style, label=label)
    right.set_yscale("log")
    right.set_ylabel("ms")
    right.set_title("Latency")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("concurrency")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"treni serve: {result['model']} on {result.get('device_name') or result.get('device')}, "
                 f"{result['config']['input_len']} in / {result['config']['output_len']} out")
    fig.tight_layout()
    path = os.path.join(out_dir, "serve_bench.png")
    fig.savefig(path, dpi=130)
    plt.close(fig)
    print(f"wrote {path}")
    return True


def plot_or_note(result, out_dir, json_path):
    if not plot(result, out_dir):
        print(f"NOTE: matplotlib is not importable here, so no serve_bench.png. On a machine with "
              f"matplotlib (the dev machine: apt-get install python3-matplotlib) run\n"
              f"  python3 bench/serve_bench.py --plot-only {json_path}")


def device_name(device):
    """The GPU's or CPU's name, when this machine can tell (the server runs here)."""
    if device == "gpu":
        try:
            return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=10).stdout.splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return None
    try:
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        return f"{names[0]} ({len(names)} threads)" if names else None
    except OSError:
        return None


# ---------------------------------------------------------------- main
def interrupt(signum, frame):
    raise KeyboardInterrupt


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "bin", "treni"))
    parser.add_argument("--model", help="model directory (default: the built-in default model)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu", "auto"))
    parser.add_argument("--server-arg", action="append", default=[],
                        help="an extra `treni serve` argument (repeat; write --server-arg=--flag)")
    parser.add_argument("--url", help="a running server, http://HOST:PORT (no server is started)")
    parser.add_argument("--concurrency", default="1,4,16,64,256")
    parser.add_argument("--requests-per-level", type=int, help="default 4x the concurrency, at least 8")
    parser.add_argument("--request-rate", type=float, help="open loop: Poisson arrivals, requests/s")
    parser.add_argument("--input-len", type=int, default=256)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--ignore-eos", action="store_true", help="send vLLM's ignore_eos: every request generates --output-len tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120, help="seconds per request")
    parser.add_argument("--max-duration", type=float, default=1800, help="seconds for the whole sweep")
    parser.add_argument("--startup-timeout", type=float, default=300)
    parser.add_argument("--out", help="folder for serve_bench.json and .png (--plot-only: the JSON's)")
    parser.add_argument("--plot-only", metavar="JSON")
    args = parser.parse_args()

    if args.plot_only:
        result = json.load(open(args.plot_only))
        out_dir = args.out or os.path.dirname(os.path.abspath(args.plot_only))
        os.makedirs(out_dir, exist_ok=True)
        print_table(result)
        plot_or_note(result, out_dir, args.plot_only)
        return 0

    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    stop, server, startup = threading.Event(), None, []
    signal.signal(signal.SIGTERM, interrupt)  # e.g. from ctest: stop as Ctrl-C does
    result, json_path = None, os.path.join(args.out, "serve_bench.json") if args.out else None
    try:
        if args.url:
            parsed = urllib.parse.urlparse(args.url)
            host, port = parsed.hostname, parsed.port or 80
        else:
            server, port, startup = start_server(args, max(64, 2 * max(levels)))
            host = "127.0.0.1"
        status, models = get_json(host, port, "/v1/models", 30)
        if status != 200 or not (models or {}).get("data"):
            sys.exit(f"serve_bench: GET /v1/models answered {status}")
        model = models["data"][0]["id"]
        max_len = models["data"][0].get("max_model_len")
        if max_len and args.input_len + args.output_len > max_len:
            sys.exit(f"serve_bench: --input-len + --output-len is past the context ({max_len})")
        vocab = probe_vocab(host, port, model, 30)
        line = next((l for l in startup if "listening on" in l), "")
        device = re.search(r"\(model '[^']*', (\w+)", line)
        device = device.group(1) if device else None
        result = dict(
            model=model, url=f"http://{host}:{port}", max_model_len=max_len,
            prompt_mode="token ids" if vocab else "words", vocab_size=vocab, device=device,
            device_name=device_name(device) if server else None, startup_log=startup,
            date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            config={k: v for k, v in vars(args).items() if k != "plot_only"}, levels=[])
        print(f"serve_bench: {model} at {result['url']}, {result['prompt_mode']} prompts"
              + (f" (vocabulary {vocab})" if vocab else ""), flush=True)
        if args.out:
            os.makedirs(args.out, exist_ok=True)

        rng = random.Random(args.seed)

        def body():
            prompt = ([rng.randrange(vocab) for _ in range(args.input_len)] if vocab
                      else " ".join(rng.choice(WORDS) for _ in range(args.input_len)))
            b = dict(model=model, prompt=prompt, max_tokens=args.output_len, temperature=0,
                     stream=True, stream_options={"include_usage": True})
            if args.ignore_eos:
                b["ignore_eos"] = True
            return b

        run_deadline = time.perf_counter() + args.max_duration
        stream_request(host, port, body(), args.timeout)  # warm-up, not counted
        for concurrency in levels:
            count = args.requests_per_level or max(8, 4 * concurrency)
            bodies = [body() for _ in range(count)]
            arrivals, t = [], 0.0
            for _ in range(count):
                arrivals.append(t)
                if args.request_rate:
                    t += rng.expovariate(args.request_rate)
            results, seconds = run_level(args, host, port, bodies, arrivals, concurrency, stop,
                                         run_deadline)
            level = summarize(results, seconds, concurrency, args.request_rate)
            result["levels"].append(level)
            print(json.dumps(level), flush=True)
            if json_path:  # after every level: a later crash keeps these
                with open(json_path, "w") as f:
                    json.dump(result, f, indent=1)
    except KeyboardInterrupt:
        stop.set()
        print("serve_bench: interrupted", file=sys.stderr)
        if result and json_path:
            result["interrupted"] = True
            with open(json_path, "w") as f:
                json.dump(result, f, indent=1)
        return 130
    finally:
        stop.set()
        if server:
            stop_server(server)
    print_table(result)
    if json_path:
        print(f"wrote {json_path}")
        plot_or_note(result, args.out, json_path)
    failed = [lv for lv in result["levels"] if lv["errors"]]
    return 1 if failed or len(result["levels"]) < len(levels) else 0


if __name__ == "__main__":
    sys.exit(main())
