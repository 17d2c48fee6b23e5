#!/usr/bin/env python3
"""Records what transformers' apply_chat_template renders for every case of
test/chat/conversations.json with the real chat templates, as the golden file
for test/unit/chat_template_test.cpp.

    python3 test/chat/make_expected.py TOKENIZERS_DIR OUT.json

TOKENIZERS_DIR holds <name>/{tokenizer.json,tokenizer_config.json} for
qwen2_5, qwen3, llama3 and llama3_2 (bash test/tokenizers/fetch.sh makes it).
Needs transformers (and jinja2); no network: everything is read from
TOKENIZERS_DIR. A case a template rejects (raise_exception, or any other
error while rendering) is recorded as {"error": message, "type": class}.
"""
import hashlib
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jinja2  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

NAMES = ["qwen2_5", "qwen3", "llama3", "llama3_2"]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    tokenizers_dir, out_path = sys.argv[1], sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "conversations.json"), encoding="utf-8") as f:
        cases = json.load(f)

    result = {
        "transformers_version": transformers.__version__,
        "jinja2_version": jinja2.__version__,
        "templates": {},
    }
    for name in NAMES:
        tok = AutoTokenizer.from_pretrained(os.path.join(tokenizers_dir, name))
        template = tok.chat_template
        entry = {
            "tokenizer_class": type(tok).__name__,
            "chat_template_sha256": hashlib.sha256(template.encode("utf-8")).hexdigest()
            if isinstance(template, str) else None,
            "cases": {},
        }
        for case in cases:
            kwargs = dict(case.get("extra") or {})
            try:
                text = tok.apply_chat_template(
                    case["messages"],
                    tools=case.get("tools"),
                    add_generation_prompt=case["add_generation_prompt"],
                    tokenize=False,
                    **kwargs,
                )
                if not isinstance(text, str):
                    raise TypeError(f"apply_chat_template returned {type(text).__name__}")
                entry["cases"][case["name"]] = {"text": text}
            except Exception as e:  # recorded, our renderer must fail too
                entry["cases"][case["name"]] = {"error": str(e), "type": type(e).__name__}
        result["templates"][name] = entry
        n_err = sum("error" in c for c in entry["cases"].values())
        print(f"{name}: {len(cases)} cases, {n_err} errors", file=sys.stderr)

    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1, sort_keys=False)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
