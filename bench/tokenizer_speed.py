#!/usr/bin/env python3
"""Hugging Face `tokenizers` on the same text and method as tokenizer_bench.

    python3 bench/tokenizer_speed.py [TOKENIZERS_DIR] [CORPUS_JSONL] [SECONDS]

The text is test/tokenizers/corpus.jsonl joined by blank lines (raw-byte
cases decoded with errors='replace', as the tokenizer sees them) and
repeated to ~1 MB, encoded as one string (one thread: TOKENIZERS_PARALLELISM
and RAYON_NUM_THREADS are set to 1). Reports load seconds, ids, cold (first
encode) and warm MB/s of input per CPU second, and decode MB/s, in the same
table layout as build/bin/tokenizer_bench, so both can run on one machine.
"""
import json
import os
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
from tokenizers import Tokenizer  # noqa: E402


def load_corpus(path):
    parts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            entry = json.loads(line)
            raw = bytes.fromhex(entry["hex"]) if "hex" in entry else entry["text"].encode()
            parts.append(raw)
    return b"\n\n".join(parts)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "build/tokenizers"
    corpus = sys.argv[2] if len(sys.argv) > 2 else "test/tokenizers/corpus.jsonl"
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    unit = load_corpus(corpus)
    raw = b""
    while len(raw) < (1 << 20):
        raw += unit + b"\n\n"
    text = raw.decode("utf-8", "replace")
    megabytes = len(raw) / 1e6
    clock = time.thread_time
    print(f"corpus: {len(raw)} bytes per pass")
    print(f"{'name':<9} {'load s':>8} {'ids':>10} {'cold MB/s':>12} {'warm MB/s':>12} {'decode MB/s':>12}")
    for name in ["qwen2_5", "qwen3", "llama3", "llama3_2"]:
        start = clock()
        tokenizer = Tokenizer.from_file(os.path.join(directory, name, "tokenizer.json"))
        load = clock() - start
        start = clock()
        ids = tokenizer.encode(text).ids
        cold = clock() - start
        passes, start = 0, clock()
        while True:
            ids = tokenizer.encode(text).ids
            passes += 1
            if clock() - start >= seconds:
                break
        warm = (clock() - start) / passes
        decodes, start = 0, clock()
        while True:
            decoded = tokenizer.decode(ids, skip_special_tokens=False)
            decodes += 1
            if clock() - start >= seconds / 2:
                break
        decode = (clock() - start) / decodes
        print(f"{name:<9} {load:8.2f} {len(ids):10d} {megabytes / cold:12.1f} "
              f"{megabytes / warm:12.1f} {len(decoded.encode()) / 1e6 / decode:12.1f}")


if __name__ == "__main__":
    main()
