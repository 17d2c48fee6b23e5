#!/usr/bin/env python3
"""Records what Hugging Face `tokenizers` makes of test/tokenizers/corpus.jsonl.

Runs where the Python `tokenizers` package is installed (the GPU machine):

    python3 test/tokenizers/make_expected.py TOKENIZERS_DIR OUT.json

TOKENIZERS_DIR holds <name>/tokenizer.json for qwen2_5, qwen3, llama3 and
llama3_2 (test/tokenizers/fetch.sh). For every corpus case and tokenizer it
records

    ids          Tokenizer.encode(text).ids (special tokens added as the file says)
    decoded      Tokenizer.decode(ids, skip_special_tokens=False)
    decoded_skip Tokenizer.decode(ids, skip_special_tokens=True)

where text is the case's "text", or bytes.fromhex(case["hex"]).decode("utf-8",
"replace") for the raw-byte cases (invalid UTF-8). One large document is built
from the cases (large_document() below; test/unit/tokenizer_test.cpp builds the
same one) and recorded as counts and SHA-256 digests only, to keep the file
small: ids_sha256 is the digest of the ids written as decimal numbers joined
by ",", the decoded digests are over the UTF-8 text.

Needs nothing but the standard library and `tokenizers`; no network.
"""
import hashlib
import json
import os
import sys

from tokenizers import Tokenizer
import tokenizers

NAMES = ["qwen2_5", "qwen3", "llama3", "llama3_2"]
LARGE_MIN_BYTES = 64 * 1024


def read_corpus(path):
    cases = []
    with open(path, "rb") as f:
        data = f.read().decode("utf-8")
    # Split on "\n" only: str.splitlines() would also split on U+2028/U+0085,
    # which the corpus holds raw inside strings.
    for line in data.split("\n"):
        if not line.strip():
            continue
        case = json.loads(line)
        if "hex" in case:
            text = bytes.fromhex(case["hex"]).decode("utf-8", "replace")
        else:
            text = case["text"]
        cases.append((case["name"], text))
    return cases


def large_document(texts):
    """All case texts joined by a blank line, repeated until >= 64 KiB."""
    unit = "\n\n".join(texts)
    unit_bytes = len(unit.encode("utf-8"))
    repeats = max(1, -(-LARGE_MIN_BYTES // unit_bytes))
    return "\n\n".join([unit] * repeats)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def ids_digest(ids):
    return sha256(",".join(str(i) for i in ids).encode("ascii"))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make_expected.py TOKENIZERS_DIR OUT.json")
    tok_dir, out_path = sys.argv[1], sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))
    corpus_path = os.path.join(here, "corpus.jsonl")
    with open(corpus_path, "rb") as f:
        corpus_sha = sha256(f.read())
    cases = read_corpus(corpus_path)
    large = large_document([text for _, text in cases])
    large_bytes = large.encode("utf-8")

    # Written by hand, one case per line, so that the committed file diffs well.
    lines = ["{"]
    lines.append('"tokenizers_version": %s,' % json.dumps(tokenizers.__version__))
    lines.append('"corpus_sha256": %s,' % json.dumps(corpus_sha))
    lines.append('"large": %s,' % json.dumps({
        "min_bytes": LARGE_MIN_BYTES, "bytes": len(large_bytes),
        "text_sha256": sha256(large_bytes)}))
    lines.append('"tokenizers": {')
    for t_index, name in enumerate(NAMES):
        path = os.path.join(tok_dir, name, "tokenizer.json")
        with open(path, "rb") as f:
            file_sha = sha256(f.read())
        tok = Tokenizer.from_file(path)
        lines.append("%s: {" % json.dumps(name))
        lines.append('"tokenizer_json_sha256": %s,' % json.dumps(file_sha))
        ids = tok.encode(large).ids
        lines.append('"large": %s,' % json.dumps({
            "count": len(ids), "ids_sha256": ids_digest(ids),
            "decoded_sha256": sha256(tok.decode(ids, skip_special_tokens=False).encode("utf-8")),
            "decoded_skip_sha256": sha256(tok.decode(ids, skip_special_tokens=True).encode("utf-8")),
        }, separators=(",", ":")))
        lines.append('"cases": {')
        for c_index, (case_name, text) in enumerate(cases):
            ids = tok.encode(text).ids
            entry = {
                "ids": ids,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip": tok.decode(ids, skip_special_tokens=True),
            }
            sep = "," if c_index + 1 < len(cases) else ""
            lines.append("%s: %s%s" % (json.dumps(case_name), json.dumps(
                entry, ensure_ascii=False, separators=(",", ":")), sep))
        lines.append("}")
        lines.append("}," if t_index + 1 < len(NAMES) else "}")
    lines.append("}")
    lines.append("}")
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    # Parse it back: the hand-written layout must be valid JSON.
    with open(out_path, encoding="utf-8") as f:
        json.load(f)
    print("make_expected: %d cases x %d tokenizers, tokenizers %s -> %s (%d bytes)"
          % (len(cases), len(NAMES), tokenizers.__version__, out_path,
             os.path.getsize(out_path)))


if __name__ == "__main__":
    main()
