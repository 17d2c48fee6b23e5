#!/usr/bin/env python3
"""Prefill: time to first token vs prompt length, Treni vs transformers, one run.

    python3 bench/prefill_bench.py --treni build/bin/treni --models-dir /tmp/models \
        --out $OUT [--lengths 128,256,...,32768] [--repeat 5] [--prefill-chunk N] \
        [--no-hf] qwen2.5-0.5b qwen2.5-3b qwen2.5-7b
    python3 bench/prefill_bench.py --plot-only $OUT/prefill.json [--out DIR]

Batch 1, bf16, random-weight models with real shapes (bench/models.py). Both
engines get the same prompt: the pseudo-random ids of
`treni run --prompt-length N` (a fixed-seed LCG, mirrored here by
treni_prompt_ids).
  Treni: one `treni run MODEL --device gpu --prompt-length N --max-tokens 1
    --repeat R --max-seq N+16 --json [--prefill-chunk C]` per length (the KV
    cache just big enough, capped at max_position_embeddings; TRENI_CACHE_DIR
    shared across the calls, default /tmp/treni-cache);
    ttft_ms is Treni's own median over R (prefill + greedy first token).
  transformers: the config's architecture class, bf16, default attention
    (SDPA), eval, no_grad; the forward generate() runs for the first token,
    model(ids, use_cache=True, logits_to_keep=1), plus the greedy pick of that
    token (argmax, .item()), timed with torch.cuda.synchronize() +
    perf_counter: 1 warm-up, then the median of R.
A failure at one point (out of memory, a crash) is recorded as that point's
error; the sweep goes on. "1st" says whether both engines picked the same
first token (a check that the prompts match; a near-tie may differ in bf16).
Prints `PREFILL model len treni_ms hf_ms hf/treni` rows and TTFT(8192) /
TTFT(2048) per engine (4.0 is linear in the length), writes prefill.json
(gpu, date, lengths, repeat, prefill_chunk, versions, and per model
points[{length, treni: {ttft_ms, first_token, ...} | {error}, hf: ...}]) and,
when matplotlib is importable, prefill_ttft.png (log-log) to --out; without
it, rerun with --plot-only where matplotlib is.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

DEFAULT_LENGTHS = "128,256,512,1024,2048,4096,8192,16384,32768"
DEFAULT_MODELS = ["qwen2.5-0.5b", "qwen2.5-3b", "qwen2.5-7b"]
TRENI_TIMEOUT_S = 1800


def treni_prompt_ids(vocab, n):
    """The ids `treni run --prompt-length n` uses (run_command.cpp's
    promptFromFlags: a 64-bit LCG seeded with 12345 over the vocab)."""
    ids, state = [], 12345
    for _ in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        ids.append((state >> 33) % vocab)
    return ids


def short_error(text, limit=300):
    """The last non-empty line of an error (treni prints `treni: error: ...`)."""
    lines = [l.strip() for l in str(text).splitlines() if l.strip()]
    return (lines[-1] if lines else str(text))[-limit:]


# ---------------------------------------------------------------- treni
def treni_point(treni, path, length, repeat, max_seq, chunk, env):
    cmd = [treni, "run", path, "--device", "gpu", "--prompt-length", str(length),
           "--max-tokens", "1", "--repeat", str(repeat), "--max-seq", str(max_seq), "--json"]
    if chunk:
        cmd += ["--prefill-chunk", str(chunk)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TRENI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {TRENI_TIMEOUT_S} s")
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return dict(error=short_error(proc.stderr or f"exit {proc.returncode}"),
                    returncode=proc.returncode, stderr_tail=proc.stderr[-2000:])
    lines = proc.stdout.splitlines()
    json_lines = [l for l in lines if l.startswith("{")]
    if not json_lines:
        return dict(error="no JSON line in treni's output", stderr_tail=proc.stderr[-2000:])
    report = json.loads(json_lines[-1])
    ids_lines = [l for l in lines if l and not l.startswith("{")]
    try:  # the generated ids line: the first token
        first = int(ids_lines[-1].split(",")[0])
    except (IndexError, ValueError):
        first = None
    if report.get("prompt_tokens") != length:
        return dict(error=f"treni prefilled {report.get('prompt_tokens')} tokens, not {length}")
    return dict(ttft_ms=report["ttft_ms"], first_token=first, load_s=report.get("load_s"),
                process_wall_s=round(wall, 3), gpu=report.get("gpu"))


# ---------------------------------------------------------------- transformers
def hf_sweep(name, path, lengths, ids, repeat, limit):
    """{length: point} for the transformers prefill; the model is loaded once."""
    import torch
    import transformers

    def sync_time():
        torch.cuda.synchronize()
        return time.perf_counter()

    config = json.load(open(os.path.join(path, "config.json")))
    cls = getattr(transformers, config["architectures"][0], None) or transformers.AutoModelForCausalLM
    points = {}
    try:
        model = cls.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()
    except Exception as e:  # e.g. out of memory: every point says so
        torch.cuda.empty_cache()
        return {n: dict(error="load: " + short_error(e)) for n in lengths}
    attn = getattr(model.config, "_attn_implementation", None)
    with torch.no_grad():
        for n in lengths:
            if n > limit:
                points[n] = dict(error=f"longer than max_position_embeddings ({limit})")
                continue
            try:
                x = torch.tensor([ids[:n]], device="cuda")
                times, first = [], None
                for r in range(repeat + 1):  # the first is the warm-up
                    t = sync_time()
                    out = model(x, use_cache=True, logits_to_keep=1)
                    first = int(out.logits[0, -1].argmax().item())
                    elapsed = sync_time() - t
                    del out
                    if r > 0:
                        times.append(elapsed)
                points[n] = dict(ttft_ms=round(statistics.median(times) * 1e3, 4), first_token=first,
                                 attn_implementation=attn)
            except torch.cuda.OutOfMemoryError as e:
                points[n] = dict(error="out of memory: " + short_error(e, 200))
            except Exception as e:  # report and go on with the next length
                points[n] = dict(error=short_error(e))
            x = out = None
            torch.cuda.empty_cache()
            print(json.dumps(dict(model=name, engine="hf", length=n, **points[n])), flush=True)
    del model
    torch.cuda.empty_cache()
    return points


# ---------------------------------------------------------------- report
def cell(point):
    if point is None:
        return "-"
    if "ttft_ms" in point:
        return f"{point['ttft_ms']:.2f}"
    return "OOM" if "out of memory" in point.get("error", "").lower() else "ERR"


def ttft(point):
    return point["ttft_ms"] if point and "ttft_ms" in point else None


def print_table(result):
    print(f"\nPREFILL on {result['gpu']} ({result['date']}), repeat {result['repeat']}, "
          f"prefill chunk {result.get('prefill_chunk') or 'default'}")
    print(f"PREFILL {'model':<14} {'len':>6} {'treni_ms':>10} {'hf_ms':>10} {'hf/treni':>9} 1st")
    errors = []
    for name, m in result["models"].items():
        for p in m["points"]:
            t, h = p.get("treni"), p.get("hf")
            ratio = f"{ttft(h) / ttft(t):.2f}" if ttft(t) and ttft(h) else "-"
            same = "-"
            if ttft(t) and ttft(h) and t.get("first_token") is not None:
                same = "same" if t["first_token"] == h.get("first_token") else "diff"
            print(f"PREFILL {name:<14} {p['length']:>6} {cell(t):>10} {cell(h):>10} {ratio:>9} {same}")
            for engine, point in (("treni", t), ("hf", h)):
                if point and "error" in point:
                    errors.append(f"PREFILL-ERROR {name} {p['length']} {engine}: {point['error'][:200]}")
    for name, m in result["models"].items():
        by_len = {p["length"]: p for p in m["points"]}
        parts = []
        for engine in ("treni", "hf"):
            a, b = (ttft(by_len.get(n, {}).get(engine)) for n in (8192, 2048))
            parts.append(f"{engine} {a / b:.2f}" if a and b else f"{engine} -")
        print(f"PREFILL {name:<14} TTFT(8192)/TTFT(2048): {', '.join(parts)}")
    for line in errors:
        print(line)


def plot(result, out_dir):
    """prefill_ttft.png in out_dir; False when matplotlib is not importable."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, m) in enumerate(result["models"].items()):
        for engine, label, style in (("treni", "Treni", "-o"), ("hf", "transformers (SDPA)", "--s")):
            xs = [p["length"] for p in m["points"] if ttft(p.get(engine))]
            ys = [ttft(p[engine]) for p in m["points"] if ttft(p.get(engine))]
            if xs:
                ax.plot(xs, ys, style, color=colors[i % len(colors)], label=f"{name} {label}",
                        markersize=4)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(result["lengths"])
    ax.set_xticklabels([str(n) for n in result["lengths"]], fontsize=8)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("prompt length (tokens)")
    ax.set_ylabel("time to first token (ms)")
    chunk = result.get("prefill_chunk")
    ax.set_title(f"Prefill TTFT, batch 1, bf16 — {result['gpu']}"
                 + (f" (Treni prefill chunk {chunk})" if chunk else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, "prefill_ttft.png")
    fig.savefig(path, dpi=130)
    plt.close(fig)
    print(f"wrote {path}")
    return True


def plot_or_note(result, out_dir, json_path):
    if not plot(result, out_dir):
        print(f"NOTE: matplotlib is not importable here, so no prefill_ttft.png. On a machine with "
              f"matplotlib (the dev machine: apt-get install python3-matplotlib) run\n"
              f"  python3 bench/prefill_bench.py --plot-only {json_path}")


# ---------------------------------------------------------------- main
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--treni")
    parser.add_argument("--models-dir", default="/tmp/models")
    parser.add_argument("--out", default=None, help="default . (--plot-only: the JSON's folder)")
    parser.add_argument("--lengths", default=DEFAULT_LENGTHS)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-hf", action="store_true")
    parser.add_argument("--prefill-chunk", type=int, default=None)
    parser.add_argument("--plot-only", metavar="JSON")
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    args = parser.parse_args()

    if args.plot_only:
        result = json.load(open(args.plot_only))
        if args.out:
            os.makedirs(args.out, exist_ok=True)
        print_table(result)
        plot_or_note(result, args.out or os.path.dirname(os.path.abspath(args.plot_only)),
                     args.plot_only)
        return 0
    if not args.treni:
        parser.error("--treni is required (unless --plot-only)")

    import torch
    import transformers
    import models

    out_dir = args.out or "."
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, "prefill.json")
    lengths = sorted({int(n) for n in args.lengths.split(",") if n.strip()})
    treni = os.path.abspath(args.treni)
    env = dict(os.environ)
    env.setdefault("TRENI_CACHE_DIR", "/tmp/treni-cache")
    result = dict(gpu=torch.cuda.get_device_name(),
                  date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                  lengths=lengths, repeat=args.repeat, prefill_chunk=args.prefill_chunk,
                  treni=treni, torch=torch.__version__, transformers=transformers.__version__,
                  models={})
    print(f"prefill sweep on {result['gpu']}: lengths {lengths}, repeat {args.repeat}", flush=True)
    for name in args.models:
        entry = dict(points=[dict(length=n) for n in lengths])
        result["models"][name] = entry
        try:
            path = models.build(name, os.path.join(args.models_dir, name))
        except Exception as e:
            entry["error"] = "build: " + short_error(e)
            for p in entry["points"]:
                p["treni"] = dict(error=entry["error"])
            print(f"{name}: {entry['error']}", flush=True)
            continue
        config = json.load(open(os.path.join(path, "config.json")))
        vocab = config["vocab_size"]
        limit = config.get("max_position_embeddings") or max(lengths) + 16
        entry.update(path=path, vocab_size=vocab, max_position_embeddings=limit,
                     weight_bytes=sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
                                      if f.endswith(".safetensors")))
        for p in entry["points"]:
            n = p["length"]
            if n > limit:
                p["treni"] = dict(error=f"longer than max_position_embeddings ({limit})")
            else:
                p["treni"] = treni_point(treni, path, n, args.repeat, min(n + 16, limit),
                                         args.prefill_chunk, env)
            print(json.dumps(dict(model=name, engine="treni", length=n,
                                  **{k: v for k, v in p["treni"].items() if k != "stderr_tail"})),
                  flush=True)
        if not args.no_hf:
            hf = hf_sweep(name, path, lengths, treni_prompt_ids(vocab, max(lengths)), args.repeat, limit)
            for p in entry["points"]:
                p["hf"] = hf[p["length"]]
        with open(json_path, "w") as f:  # after every model: a later crash keeps these
            json.dump(result, f, indent=1)
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {json_path}")
    print_table(result)
    plot_or_note(result, out_dir, json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
