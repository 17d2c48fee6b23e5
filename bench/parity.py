#!/usr/bin/env python3
"""Parity of Treni's GPU logits with transformers (run on the GPU machine).

    python3 bench/parity.py --treni build/bin/treni --models-dir /tmp/models \
        --out $OUT qwen2 llama qwen3 qwen2.5-0.5b ...

For each model: a fixed random sequence S of 64 tokens; transformers computes
fp32 logits at every position (eager attention) and its own bf16 logits. Treni
is run twice, teacher-forced on S:
  decode path:  prompt S[0:1], then S[1:64] fed to decode -> positions 0..63
  prefill path: prompt S[0:32], then S[32:64] -> positions 31..63
Criteria (from the issue): at each of the 64 positions, the relative L2 error
of Treni's logits against fp32 is at most 1.25x transformers' bf16 error at
that position; greedy tokens match fp32 wherever fp32's top-1/top-2 margin
exceeds 0.05. Prints one line per model and writes parity.json.

Long prompts (the prefill at length, e.g. chunked and flash attention):

    python3 bench/parity.py --treni build/bin/treni --prompt-length 8192 \
        [--prefill-chunk 2048] --out $OUT qwen2.5-0.5b ...

S is N+32 tokens: the seeded pseudo-random ids of `treni run --prompt-length`
(its LCG, mirrored by prefill_bench.treni_prompt_ids: no 100 KB id list on
the command line). Treni is run once, prompt S[0:N] (--prompt-length N) and
S[N:N+32] forced, so its logits are positions N-1..N+31 (33 rows, the first
from the prefill). The references run the full S[0:N+32] with
logits_to_keep=33: fp32 transformers with SDPA (eager attention would need
tens of GB at 8k) and bf16 transformers with SDPA. Same criteria at those 33
positions; writes parity_long{N}.json. --prefill-chunk C goes to every GPU
run of Treni (both modes).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(__file__))
import models  # noqa: E402
import prefill_bench  # noqa: E402  (treni_prompt_ids)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures")
POSITIONS = 64


def model_dir(name, models_dir):
    if name in ("qwen2", "llama", "qwen3"):
        return os.path.abspath(os.path.join(FIXTURES, name))
    return models.build(name, os.path.join(models_dir, name))


def run_treni(treni, path, prompt, forced, out_file, env, extra=()):
    """prompt: a list of ids, or an int N for `--prompt-length N`."""
    prompt_flag = (["--prompt-length", str(prompt)] if isinstance(prompt, int)
                   else ["--prompt-ids", ",".join(map(str, prompt))])
    cmd = [treni, "run", path, "--device", "gpu", *prompt_flag,
           "--force-ids", ",".join(map(str, forced)),
           "--max-tokens", str(len(forced) + 1), "--dump-logits", out_file, *extra]
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"treni failed ({proc.returncode}): {proc.stderr[-4000:]}")
    return np.fromfile(out_file, dtype=np.float32), proc.stderr, time.time() - start


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def score(label, logits, first, fp32, bf16, ref_first=0):
    """One row per position of `logits` (position first + i); fp32 and bf16
    hold the references' rows from position ref_first on."""
    rows = []
    for i, row in enumerate(logits):
        pos = first + i
        ref, low = fp32[pos - ref_first], bf16[pos - ref_first]
        err = rel_l2(row, ref)
        ref_err = rel_l2(low, ref)
        top2 = np.sort(ref)[-2:]
        margin = float(top2[1] - top2[0])
        greedy_ok = margin <= 0.05 or int(np.argmax(row)) == int(np.argmax(ref))
        rows.append(dict(path=label, pos=pos, err=err, bf16_err=ref_err,
                         ratio=err / max(ref_err, 1e-12), margin=margin, greedy_ok=greedy_ok,
                         clear=margin > 0.05))
    return rows


def summary(name, rows, **extra):
    bad = [r for r in rows if r["ratio"] > 1.25 or not r["greedy_ok"]]
    return dict(model=name, passed=not bad, positions=len(rows),
                max_ratio=max(r["ratio"] for r in rows),
                max_err=max(r["err"] for r in rows),
                max_bf16_err=max(r["bf16_err"] for r in rows),
                clear_margin_positions=sum(r["clear"] for r in rows),
                greedy_mismatch=sum(not r["greedy_ok"] for r in rows),
                failing=bad[:5], **extra,
                per_position=[(r["path"], r["pos"], round(r["err"], 6), round(r["bf16_err"], 6))
                              for r in rows])


LONG_FORCED = 32


def check_long(name, path, treni, out_dir, env, length, chunk):
    """Long-prompt mode: see the docstring at the top."""
    config = json.load(open(os.path.join(path, "config.json")))
    vocab = config["vocab_size"]
    limit = config.get("max_position_embeddings") or 0
    total = length + LONG_FORCED
    if limit and total > limit:
        raise ValueError(f"--prompt-length {length} + {LONG_FORCED} is more than the model's "
                         f"max_position_embeddings ({limit})")
    seq = prefill_bench.treni_prompt_ids(vocab, total)
    keep = LONG_FORCED + 1  # positions length-1 .. total-1

    cls = getattr(transformers, config["architectures"][0])
    ids = torch.tensor([seq], device="cuda")
    ref_seconds = []
    refs = []
    with torch.no_grad():
        for dtype in (torch.float32, torch.bfloat16):
            start = time.time()
            model = cls.from_pretrained(path, dtype=dtype, attn_implementation="sdpa").cuda().eval()
            out = model(ids, use_cache=False, logits_to_keep=keep)
            refs.append(out.logits[0].float().cpu().numpy())
            del out, model
            torch.cuda.empty_cache()
            ref_seconds.append(time.time() - start)
    del ids
    torch.cuda.empty_cache()
    fp32, bf16 = refs
    assert fp32.shape == (keep, vocab), fp32.shape

    extra = ["--max-seq", str(min(total + 32, limit) if limit else total + 32)] + TRENI_ARGS
    if chunk:
        extra += ["--prefill-chunk", str(chunk)]
    out_file = os.path.join(out_dir, f"{name}.long{length}.bin")
    logits, log, secs = run_treni(treni, path, length, seq[length:], out_file, env, extra)
    os.remove(out_file)
    logits = logits.reshape(-1, vocab)
    assert logits.shape[0] == keep, logits.shape

    rows = score(f"long{length}", logits, length - 1, fp32, bf16, ref_first=length - 1)
    return summary(name, rows, prompt_length=length, prefill_chunk=chunk,
                   prefill_ratio=rows[0]["ratio"], cpu_fp32_max_err=None,
                   treni_log=log[-1500:], treni_seconds=[secs], ref_seconds=ref_seconds)


# Flags given with --treni-arg, passed to every treni run.
TRENI_ARGS = []


def check(name, path, treni, out_dir, env, chunk=None):
    config = json.load(open(os.path.join(path, "config.json")))
    vocab = config["vocab_size"]
    rng = np.random.default_rng(7)
    seq = rng.integers(0, vocab, size=POSITIONS).tolist()

    cls = getattr(transformers, config["architectures"][0])
    with torch.no_grad():
        ref = cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").cuda().eval()
        fp32 = ref(torch.tensor([seq], device="cuda")).logits[0].float().cpu().numpy()
        del ref
        torch.cuda.empty_cache()
        low = cls.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()
        bf16 = low(torch.tensor([seq], device="cuda")).logits[0].float().cpu().numpy()
        del low
        torch.cuda.empty_cache()

    extra = (["--prefill-chunk", str(chunk)] if chunk else []) + TRENI_ARGS
    decode, log_a, secs_a = run_treni(treni, path, seq[:1], seq[1:], os.path.join(out_dir, f"{name}.decode.bin"), env, extra)
    prefill, log_b, secs_b = run_treni(treni, path, seq[:32], seq[32:], os.path.join(out_dir, f"{name}.prefill.bin"), env, extra)
    for suffix in ("decode", "prefill"):
        os.remove(os.path.join(out_dir, f"{name}.{suffix}.bin"))
    decode = decode.reshape(-1, vocab)
    prefill = prefill.reshape(-1, vocab)
    assert decode.shape[0] == POSITIONS, decode.shape
    assert prefill.shape[0] == POSITIONS - 31, prefill.shape

    rows = (score("decode", decode, 0, fp32, bf16)
            + score("prefill", prefill, 31, fp32, bf16))
    cpu_err = None
    if name in ("qwen2", "llama", "qwen3"):
        # The fp32 CPU executor on the same 64 positions: how exact is the math
        # itself (no 16-bit rounding anywhere)?
        env_cpu = dict(env)
        cmd = [treni, "run", path, "--device", "cpu", "--prompt-ids", str(seq[0]),
               "--force-ids", ",".join(map(str, seq[1:])), "--max-tokens", str(POSITIONS),
               "--dump-logits", os.path.join(out_dir, f"{name}.cpu.bin")]
        subprocess.run(cmd, check=True, capture_output=True, env=env_cpu)
        cpu = np.fromfile(os.path.join(out_dir, f"{name}.cpu.bin"), dtype=np.float32).reshape(-1, vocab)
        os.remove(os.path.join(out_dir, f"{name}.cpu.bin"))
        cpu_err = max(rel_l2(cpu[i], fp32[i]) for i in range(POSITIONS))
    return summary(name, rows, cpu_fp32_max_err=cpu_err, prompt_length=0, prefill_chunk=chunk,
                   treni_log=log_a[-1500:], treni_seconds=[secs_a, secs_b])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--treni", required=True)
    parser.add_argument("--models-dir", default="/tmp/models")
    parser.add_argument("--out", default=".")
    parser.add_argument("--prompt-length", type=int, default=0,
                        help="long-prompt mode: N prompt tokens + 32 forced (0: the 64-position check)")
    parser.add_argument("--prefill-chunk", type=int, default=None,
                        help="passed to treni's GPU runs as --prefill-chunk")
    parser.add_argument("--treni-arg", action="append", default=[],
                        help="one more flag for every treni run, e.g. --treni-arg=--seq1-tensor-cores")
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    TRENI_ARGS[:] = args.treni_arg
    env = dict(os.environ)
    long_mode = args.prompt_length > 0
    results = []
    for name in args.models:
        try:
            path = model_dir(name, args.models_dir)
            if long_mode:
                r = check_long(name, path, os.path.abspath(args.treni), args.out, env,
                               args.prompt_length, args.prefill_chunk)
            else:
                r = check(name, path, os.path.abspath(args.treni), args.out, env, args.prefill_chunk)
        except Exception as e:  # report and go on with the next model
            r = dict(model=name, passed=False, error=str(e)[-3000:],
                     prompt_length=args.prompt_length, prefill_chunk=args.prefill_chunk)
        torch.cuda.empty_cache()  # whatever a failed check left (its frames are gone now)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k not in ("treni_log", "per_position")}),
              flush=True)
    json_name = f"parity_long{args.prompt_length}.json" if long_mode else "parity.json"
    with open(os.path.join(args.out, json_name), "w") as f:
        json.dump(results, f, indent=1)
    chunk = args.prefill_chunk or "default"
    # Long mode: the same columns, then the prompt length and prefill chunk
    # (and err/bf16err at position N-1, the prefill's own row).
    tail = f"  prompt={args.prompt_length} chunk={chunk}" if long_mode else ""
    print("\nPARITY  model            result  positions  max(err/bf16err)  max rel-L2  greedy-mismatch/clear"
          + ("  prompt chunk prefill-row-ratio" if long_mode else ""))
    for r in results:
        if "error" in r:
            print(f"PARITY  {r['model']:<16} ERROR  {tail} {r['error'][:200]}")
        else:
            print(f"PARITY  {r['model']:<16} {'PASS' if r['passed'] else 'FAIL':<7} {r['positions']:>9}  "
                  f"{r['max_ratio']:>16.3f}  {r['max_err']:>10.2e}  {r['greedy_mismatch']}/{r['clear_margin_positions']}"
                  + (f"{tail} prefill-row={r['prefill_ratio']:.3f}" if long_mode else ""))
    return 0 if all(r.get("passed") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
