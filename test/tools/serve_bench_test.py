#!/usr/bin/env python3
"""Tests that bench/serve_bench.py runs a tiny sweep against `treni serve` on
the fixture and writes serve_bench.json with the keys its readers use.

    python3 test/tools/serve_bench_test.py --treni build/bin/treni --model test/fixtures/qwen2
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEVEL_KEYS = {"concurrency", "requests", "completed", "rejected_429", "errors", "all_finished",
              "request_throughput", "output_tok_s", "output_tok_s_usage", "ttft_p50_ms",
              "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "e2e_p50_ms", "e2e_p99_ms"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--treni", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, "bench", "serve_bench.py"), "--binary", args.treni,
             "--model", args.model, "--device", "cpu", "--concurrency", "1,4", "--input-len", "16",
             "--output-len", "8", "--requests-per-level", "8", "--timeout", "30",
             "--max-duration", "60", "--out", out],
            capture_output=True, text=True, timeout=90)
        print(proc.stdout, proc.stderr, sep="\n")
        failures = []
        if proc.returncode != 0:
            failures.append(f"exit status {proc.returncode}")
        if sum(line.startswith("SERVE ") for line in proc.stdout.splitlines()) < 4:
            failures.append("fewer than 4 SERVE lines (title, header, two levels)")
        try:
            result = json.load(open(os.path.join(out, "serve_bench.json")))
        except (OSError, ValueError) as error:
            sys.exit(f"serve_bench_test: FAIL: no valid serve_bench.json: {error}")
    missing = {"model", "date", "config", "device", "prompt_mode", "levels"} - result.keys()
    if missing:
        failures.append(f"missing top-level keys {sorted(missing)}")
    if [lv.get("concurrency") for lv in result.get("levels", [])] != [1, 4]:
        failures.append("levels are not concurrency 1 and 4")
    for lv in result.get("levels", []):
        if LEVEL_KEYS - lv.keys():
            failures.append(f"level {lv.get('concurrency')} lacks {sorted(LEVEL_KEYS - lv.keys())}")
        elif not (lv["all_finished"] and lv["completed"] == 8 and lv["output_tok_s"] > 0
                  and lv["ttft_p50_ms"] > 0):
            failures.append(f"level {lv['concurrency']}: not every request finished with tokens")
    if result.get("prompt_mode") != "token ids":
        failures.append(f"prompt mode {result.get('prompt_mode')!r}, expected token ids")
    for failure in failures:
        print("serve_bench_test: FAIL: " + failure)
    if failures:
        sys.exit(1)
    print("serve_bench_test: OK")


if __name__ == "__main__":
    main()
