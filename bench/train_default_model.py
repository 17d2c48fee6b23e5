#!/usr/bin/env python3
"""Trains treni's built-in default model: a tiny Qwen2 that adds numbers.

`treni run` / `chat` / `serve` with no model directory load
test/fixtures/default. This script makes it, in one run on the GPU machine
(torch, transformers, tokenizers, safetensors; no network):

  1. A byte-level BPE tokenizer trained with `tokenizers` on the chat
     transcripts below and a short English text: the 256 byte tokens, merges
     up to --vocab - 3 tokens, then <|endoftext|>, <|im_start|>, <|im_end|>.
     The pre-tokenizer is Qwen2.5's (NFC, its split regex, which isolates
     every digit, then ByteLevel), so digits are always single tokens.
  2. A ChatML chat template (tokenizer_config.json; eos <|im_end|>, no
     default system message).
  3. A Qwen2ForCausalLM (hidden 192, 4 layers, 6 heads / 2 KV heads, FFN
     512, tied embeddings) trained on "What is A + B?" -> the digits of
     A + B, then <|im_end|>, for 0 <= A, B <= 999. Operand lengths (1, 2 or
     3 digits) are drawn uniformly, so short sums are as common as long
     ones; 20% of the conversations start with a system message and 15% have
     an earlier question and answer. Pairs are split with
     bench/agent_bench.py's arith_split, made symmetric: (A, B) is held out
     (test or validation) when either order is, and never trained on; the
     golden pairs are excluded as well.
  4. Exact-match accuracy of greedy decoding on held-out pairs (every test
     pair with A, B <= 99, and a sample over 0..999), with the saved bf16
     weights computed in fp32 (as treni's CPU executor runs them) and in
     bf16 (as its GPU path does).
  5. golden.json: a few chats rendered through the template with
     transformers, their prompt ids (`tokenizers`) and the greedy output ids
     of the fp32 model on the CPU (eager attention), with the logit margin
     of every generated token (a near-tie would make the runtime's choice
     legitimately differ).
  6. README.md with this run's numbers.

  HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \\
      python3 bench/train_default_model.py --out DIR [--budget 150] [--json RESULT]

DIR then holds config.json, generation_config.json, model.safetensors,
tokenizer.json, tokenizer_config.json, golden.json and README.md: what
test/fixtures/default holds (test/unit/default_model_test.cpp checks the
runtime against golden.json). --load DIR skips steps 1-3 and redoes the
rest for a model saved by an earlier run. Training stops after --budget
seconds or once the validation exact match is 1.0 at three evaluations in a
row. The data half (splits, chats, ids) is standard library only.
"""

import argparse
import json
import math
import os
import random
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for path in (HERE, os.path.join(HERE, "..", "bench")):
    sys.path.insert(0, path)
import agent_bench  # noqa: E402  (stdlib only: the held-out split)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen2.5's pre-tokenizer split: \p{N} matches one digit at a time.
QWEN_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# ChatML, every message as <|im_start|>ROLE\nCONTENT<|im_end|>\n. Whitespace
# is controlled by {%- -%} alone, so trim_blocks / lstrip_blocks (which
# transformers sets) change nothing.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")

SYSTEMS = ["You are a helpful assistant.",
           "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
           "Answer with the number only."]

# Extra text for the tokenizer's merges (the model never trains on it), so
# that everyday words are not all single bytes.
ENGLISH = """\
This is the default model of treni, a compiler and runtime for language
models. It is very small and it was trained to do one thing: add two whole
numbers. Ask it what one number plus another number is, and it answers with
the sum and nothing else. It does not know anything about the world, and it
cannot hold a conversation. The user asks a question, the system sets the
rules and the assistant answers. Hello! How are you? What is the time? Thank
you, that is all for now. Please write the answer as a number.
"""

# (messages, a, b): the golden chats; their pairs are never trained on.
GOLDEN_CHATS = [
    ([{"role": "user", "content": "What is 12 + 34?"}], 12, 34),
    ([{"role": "user", "content": "What is 7 + 5?"}], 7, 5),
    ([{"role": "user", "content": "What is 99 + 1?"}], 99, 1),
    ([{"role": "user", "content": "What is 58 + 67?"}], 58, 67),
    ([{"role": "user", "content": "What is 456 + 789?"}], 456, 789),
    ([{"role": "system", "content": SYSTEMS[0]},
      {"role": "user", "content": "What is 23 + 19?"}], 23, 19),
    ([{"role": "user", "content": "What is 3 + 4?"},
      {"role": "assistant", "content": "7"},
      {"role": "user", "content": "What is 30 + 25?"}], 30, 25),
]
GOLDEN_PAIRS = {(a, b) for _, a, b in GOLDEN_CHATS} | {(3, 4)}

MODEL_SHAPE = dict(hidden=192, layers=4, heads=6, kv_heads=2, ffn=512)


#===----------------------------------------------------------------------===#
# Data (standard library only)
#===----------------------------------------------------------------------===#

def question(a, b):
    return agent_bench.arith_prompt(a, b)


def split(a, b):
    """'test', 'val' or 'train': held out when either order is."""
    parts = (agent_bench.arith_split(a, b), agent_bench.arith_split(b, a))
    return "test" if "test" in parts else "val" if "val" in parts else "train"


def trainable(a, b):
    return (split(a, b) == "train" and (a, b) not in GOLDEN_PAIRS
            and (b, a) not in GOLDEN_PAIRS)


def operand(rng):
    """A number of 1, 2 or 3 digits, the length drawn uniformly."""
    digits = rng.randrange(3) + 1
    return rng.randrange(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits)


def train_pair(rng):
    while True:
        a, b = operand(rng), operand(rng)
        if trainable(a, b):
            return a, b


def render(messages, add_generation_prompt=True):
    """CHAT_TEMPLATE in Python (checked against transformers' rendering)."""
    text = "".join("<|im_start|>%s\n%s<|im_end|>\n" % (m["role"], m["content"])
                   for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def train_chat(rng):
    """Messages ending with the answer: [system], [question, answer], q, a."""
    messages = []
    if rng.random() < 0.2:
        messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
    for _ in range(2 if rng.random() < 0.15 else 1):
        a, b = train_pair(rng)
        messages.append({"role": "user", "content": question(a, b)})
        messages.append({"role": "assistant", "content": str(a + b)})
    return messages


class ChatEncoder:
    """Token ids of rendered chats without running the tokenizer per chat.

    The tokenizer never merges across a special token, and the split regex
    makes every digit its own piece, so the ids of a chat are the ids of its
    pieces between specials and digits, concatenated. `encode` is the
    tokenizer (text -> ids); `check` compares with it on whole chats."""

    def __init__(self, encode, special_ids):
        self.encode = encode
        self.special = special_ids  # content -> id
        self.cache = {}

    def text_ids(self, text):
        ids = []
        for piece in re.split(r"(\d)", text):
            if piece:
                if piece not in self.cache:
                    self.cache[piece] = self.encode(piece)
                ids.extend(self.cache[piece])
        return ids

    def chat_ids(self, messages, add_generation_prompt=False):
        """(ids, is_target): the assistant contents and their <|im_end|>
        are targets (predicted), everything else is context."""
        start, end = self.special["<|im_start|>"], self.special["<|im_end|>"]
        ids, target = [], []

        def put(new, flag):
            ids.extend(new)
            target.extend([flag] * len(new))

        for m in messages:
            put([start] + self.text_ids(m["role"] + "\n"), False)
            answer = m["role"] == "assistant"
            put(self.text_ids(m["content"]) + [end], answer)
            put(self.text_ids("\n"), False)
        if add_generation_prompt:
            put([start] + self.text_ids("assistant\n"), False)
        return ids, target

    def frozen(self):
        """A copy that knows only the pieces seen so far and holds no
        tokenizer (for forked worker processes)."""
        def unseen(piece):
            raise KeyError("piece %r was not seen before freezing" % piece)
        copy = ChatEncoder(unseen, self.special)
        copy.cache = dict(self.cache)
        return copy

    def check(self, chats):
        for messages in chats:
            for gen in (False, True):
                got = self.chat_ids(messages, gen)[0]
                want = self.encode(render(messages, gen))
                if got != want:
                    raise AssertionError("piecewise ids differ for %r: %r vs %r" % (
                        render(messages, gen), got, want))


def tokenizer_corpus(rng, n=3000):
    """Text the tokenizer's merges are learned from."""
    chats = [render(train_chat(rng), False) for _ in range(n)]
    chats += [render([{"role": "system", "content": s}], False) for s in SYSTEMS] * 50
    return chats + [ENGLISH] * 5


def tokenizer_config():
    """tokenizer_config.json (ids filled in by the caller)."""
    return {"add_bos_token": False, "add_prefix_space": False,
            "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
            "unk_token": None, "chat_template": CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False, "errors": "replace",
            "model_max_length": 4096, "split_special_tokens": False,
            "tokenizer_class": "PreTrainedTokenizerFast"}


_WORKER_ENCODER = None  # set before the worker processes fork


def _rows_part(job):
    seed, count, width, pad = job
    rng, xs, ys = random.Random(seed), [], []
    for _ in range(count):
        ids, target = _WORKER_ENCODER.chat_ids(train_chat(rng))
        if len(ids) > width:
            raise AssertionError("a chat of %d tokens, wider than %d" % (len(ids), width))
        xs.append(ids + [pad] * (width - len(ids)))
        # ys[r][i] is what position i predicts: ids[i + 1] when that is a
        # target token, else -100 (no loss).
        ys.append([t if f else -100 for t, f in zip(ids[1:], target[1:])]
                  + [-100] * (width - len(ids) + 1))
    return xs, ys


def training_rows(encoder, count, seed, pad, processes):
    """`count` training chats as (inputs, labels) rows, right-padded with
    `pad` to the longest chat train_chat can make; drawn in `processes`
    forked processes (Python is the slow part)."""
    global _WORKER_ENCODER
    width = max(len(encoder.chat_ids(
        [{"role": "system", "content": system}]
        + [{"role": "user", "content": question(999, 999)},
           {"role": "assistant", "content": "1998"}] * 2)[0]) for system in SYSTEMS)
    _WORKER_ENCODER = encoder.frozen()
    jobs = [(seed * 1000 + k, count // processes + (k < count % processes), width, pad)
            for k in range(processes)]
    if processes > 1:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(processes) as workers:
            parts = workers.map(_rows_part, jobs)
    else:
        parts = [_rows_part(job) for job in jobs]
    return [r for xs, _ in parts for r in xs], [r for _, ys in parts for r in ys]


def eval_sets(seed=5):
    """Held-out pairs: every test pair with A, B <= 99, and a sample over
    0..999 (operand lengths uniform, as in training)."""
    small = [(a, b) for a in range(100) for b in range(100)
             if split(a, b) == "test" and (a, b) not in GOLDEN_PAIRS]
    rng, seen, wide = random.Random(seed), set(), []
    while len(wide) < 6000:
        a, b = operand(rng), operand(rng)
        if split(a, b) == "test" and (a, b) not in seen and (a, b) not in GOLDEN_PAIRS:
            seen.add((a, b))
            wide.append((a, b))
    return small, wide


def val_pairs(n=2048, seed=3):
    rng, out = random.Random(seed), []
    while len(out) < n:
        a, b = operand(rng), operand(rng)
        if split(a, b) == "val":
            out.append((a, b))
    return out


#===----------------------------------------------------------------------===#
# Tokenizer, model, training, evaluation (GPU machine)
#===----------------------------------------------------------------------===#

def build_tokenizer(vocab, rng):
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                            pre_tokenizers, processors, trainers)
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab - len(SPECIALS), min_frequency=2,
                                  show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train_from_iterator(tokenizer_corpus(rng), trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    return tok


def write_tokenizer_files(tok, out):
    tok.save(os.path.join(out, "tokenizer.json"))
    config = tokenizer_config()
    config["added_tokens_decoder"] = {
        str(tok.token_to_id(s)): {"content": s, "lstrip": False, "normalized": False,
                                  "rstrip": False, "single_word": False, "special": True}
        for s in SPECIALS}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")


def check_template(out, log):
    """Renders the golden chats with transformers' apply_chat_template over
    the saved files (or, if that cannot load them, with jinja2 set up as
    transformers sets it up) and checks the text against render() and the
    ids against `tokenizers`. Returns which renderer was checked."""
    from tokenizers import Tokenizer
    raw = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    chats = [m for m, _, _ in GOLDEN_CHATS]
    try:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(out)
        texts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                 for m in chats]
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        renderer = "transformers %s" % type(tok).__name__
    except Exception as e:  # noqa: BLE001 (said so in the log and the result)
        log("transformers could not render the template (%r); checking with jinja2" % e)
        import jinja2
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
        template = env.from_string(CHAT_TEMPLATE)
        texts = [template.render(messages=m, add_generation_prompt=True) for m in chats]
        ids = [raw.encode(t, add_special_tokens=False).ids for t in texts]
        renderer = "jinja2 %s" % jinja2.__version__
    for m, text, i in zip(chats, texts, ids):
        if text != render(m):
            raise AssertionError("%s renders %r, expected %r" % (renderer, text, render(m)))
        if i != raw.encode(text, add_special_tokens=False).ids:
            raise AssertionError("%s and tokenizers encode %r differently" % (renderer, text))
    log("%s renders the template as render() does and encodes as tokenizers does" % renderer)
    return renderer


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--load", help="evaluate this saved model instead of training one")
    p.add_argument("--budget", type=float, default=150.0, help="training seconds at most")
    p.add_argument("--vocab", type=int, default=384)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--pool", type=int, default=500000, help="training chats drawn up front")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the training log and evaluation here")
    args = p.parse_args()

    start_all = time.monotonic()

    def log(msg):
        print("[%6.1f s] %s" % (time.monotonic() - start_all, msg), flush=True)

    from tokenizers import Tokenizer
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    result = {}
    if args.load:
        tok = Tokenizer.from_file(os.path.join(args.load, "tokenizer.json"))
        if os.path.abspath(args.load) != os.path.abspath(args.out):
            import shutil
            for name in os.listdir(args.load):
                shutil.copy(os.path.join(args.load, name), os.path.join(args.out, name))
    else:
        tok = build_tokenizer(args.vocab, rng)
        write_tokenizer_files(tok, args.out)
    special = {s: tok.token_to_id(s) for s in SPECIALS}
    if any(v is None for v in special.values()) or tok.get_vocab_size() > args.vocab:
        sys.exit("tokenizer: %d tokens, specials %r" % (tok.get_vocab_size(), special))
    im_end, pad = special["<|im_end|>"], special["<|endoftext|>"]
    encoder = ChatEncoder(lambda text: tok.encode(text, add_special_tokens=False).ids, special)
    check_rng = random.Random(1)
    encoder.check([train_chat(check_rng) for _ in range(3000)]
                  + [m + [{"role": "assistant", "content": str(a + b)}]
                     for m, a, b in GOLDEN_CHATS])
    result["template_checked_with"] = check_template(args.out, log)
    log("tokenizer: %d tokens (%d merges); %r -> %r" % (
        tok.get_vocab_size(), tok.get_vocab_size() - 256 - len(SPECIALS),
        render(GOLDEN_CHATS[0][0]), tok.encode(render(GOLDEN_CHATS[0][0])).tokens))
    if not args.load:  # before torch starts any threads: the workers fork
        rows = training_rows(encoder, args.pool, args.seed + 1, pad, min(16, os.cpu_count()))
        log("training pool: %d chats of %d tokens at most" % (len(rows[0]), len(rows[0][0])))

    import torch
    import transformers
    from transformers import Qwen2ForCausalLM
    import models  # bench/models.py: the config across transformers versions

    torch.manual_seed(args.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    import tokenizers
    result["environment"] = {
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__}
    log("environment: %r" % result["environment"])

    if not args.load:
        import numpy as np
        x = torch.from_numpy(np.array(rows[0], dtype=np.int32)).to(dev)
        y = torch.from_numpy(np.array(rows[1], dtype=np.int32)).to(dev)
        del rows
        s = MODEL_SHAPE
        arch, fields, rope = models.qwen2(s["hidden"], s["layers"], s["heads"], s["kv_heads"],
                                          s["ffn"], args.vocab, True)
        fields["max_position_embeddings"] = 4096
        config = models.make_config(arch, fields, rope)
        config.bos_token_id, config.eos_token_id, config.pad_token_id = pad, im_end, pad
        model = Qwen2ForCausalLM(config).to(dev)
        result["train"] = train(model, x, y, encoder, args, dev, pad, log)
        del x, y
        model = model.to(torch.bfloat16)
        try:
            model.save_pretrained(args.out)
        except Exception as e:  # noqa: BLE001 (keep the training: save it plainly)
            from safetensors.torch import save_file
            log("save_pretrained failed (%r); writing model.safetensors directly" % e)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()
                       if k != "lm_head.weight"}, os.path.join(args.out, "model.safetensors"),
                      metadata={"format": "pt"})
            model.config.save_pretrained(args.out)
        with open(os.path.join(args.out, "generation_config.json"), "w") as f:
            json.dump({"bos_token_id": pad, "eos_token_id": [im_end, pad], "pad_token_id": pad},
                      f, indent=2)
            f.write("\n")
        del model
    sizes = {name: os.path.getsize(os.path.join(args.out, name))
             for name in sorted(os.listdir(args.out)) if name not in ("golden.json", "README.md")}
    result["sizes"] = dict(sizes, total=sum(sizes.values()))
    log("files: %r" % result["sizes"])

    # Everything below uses the saved (bf16) weights.
    def load(dtype, device, attn="sdpa"):
        kwargs = dict(attn_implementation=attn)
        try:
            m = Qwen2ForCausalLM.from_pretrained(args.out, dtype=dtype, **kwargs)
        except TypeError:
            m = Qwen2ForCausalLM.from_pretrained(args.out, torch_dtype=dtype, **kwargs)
        return m.to(device).eval()

    # Each stage on its own: a failure is logged and the others still run
    # (the checkpoint is saved; --load redoes what failed).
    def stage(name, fn):
        try:
            result[name] = fn()
        except Exception:  # noqa: BLE001 (logged with its traceback)
            import traceback
            log("%s FAILED:\n%s" % (name, traceback.format_exc()))
            result[name] = "failed"

    stage("golden", lambda: goldens(load(torch.float32, "cpu", "eager"), encoder, im_end, pad,
                                    args.out, result["template_checked_with"], log))
    small, wide = eval_sets()
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        stage("eval_" + name, lambda: evaluate(load(dtype, dev), encoder, small, wide, im_end,
                                               pad, dev, log, name))
    result["seconds_total"] = round(time.monotonic() - start_all, 1)
    result["tokenizer"] = {"tokens": tok.get_vocab_size(),
                           "merges": tok.get_vocab_size() - 256 - len(SPECIALS)}
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(readme(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    log("done")
    return 0


def readme(result):
    """test/fixtures/default/README.md, with this run's numbers."""
    lines = ["# The default model", "",
             "What `treni run`, `treni chat` and `treni serve` load when no model is given",
             "(TRENI_DEFAULT_MODEL_DIR, tools/CMakeLists.txt). A tiny Qwen2ForCausalLM that",
             "adds two whole numbers of up to three digits: ask it \"What is 12 + 34?\" as a",
             "user message and it answers \"46\", then <|im_end|>. It knows nothing else.", "",
             "## How it was made", "",
             "`python3 bench/train_default_model.py --out DIR` (see its docstring), in one run"]
    env = result.get("environment", {})
    lines.append("on %s (torch %s, transformers %s, tokenizers %s)." % (
        env.get("device"), env.get("torch"), env.get("transformers"), env.get("tokenizers")))
    tok = result.get("tokenizer", {})
    lines += ["", "- Tokenizer: byte-level BPE trained with `tokenizers` (Qwen2.5's",
              "  pre-tokenizer, so every digit is one token): %s tokens, i.e. the 256 bytes," % (
                  tok.get("tokens")),
              "  %s merges and <|endoftext|>, <|im_start|>, <|im_end|>." % tok.get("merges"),
              "- Chat template: ChatML (`<|im_start|>ROLE\\nCONTENT<|im_end|>\\n` per message,",
              "  then `<|im_start|>assistant\\n`), no default system message; eos <|im_end|>."]
    train_info = result.get("train")
    if isinstance(train_info, dict):
        shape = train_info["shape"]
        lines += ["- Model: hidden %d, %d layers, %d heads / %d KV heads, FFN %d, tied" % (
                      shape["hidden"], shape["layers"], shape["heads"], shape["kv_heads"],
                      shape["ffn"]),
                  "  embeddings, %d parameters, stored in bf16." % train_info["parameters"],
                  "- Training: %d steps of %d chats in %.0f s (AdamW, peak lr %g, cosine)." % (
                      train_info["steps"], train_info["batch"], train_info["seconds"],
                      train_info["lr"]),
                  "  Operand lengths (1-3 digits) uniform; 20% of the chats open with a system",
                  "  message, 15% have an earlier question and answer. Pairs held out by",
                  "  bench/agent_bench.py's arith_split (either order held out -> never",
                  "  trained on), and the golden pairs."]
    lines += ["", "## Accuracy", "",
              "Exact match of greedy decoding (the sum's digits, then the end token) on",
              "held-out pairs, with the saved bf16 weights:", "",
              "| prompts | pairs | fp32 (transformers) | bf16 (transformers, GPU) |", "| --- | --- | --- | --- |"]
    fp32, bf16 = result.get("eval_fp32"), result.get("eval_bf16")
    if isinstance(fp32, dict):
        for label, r in fp32.items():
            other = bf16.get(label, {}).get("accuracy") if isinstance(bf16, dict) else None
            lines.append("| %s | %d | %.4f | %s |" % (
                label, r["pairs"], r["accuracy"], "%.4f" % other if other is not None else "-"))
        wide = fp32.get("single_turn_0_999", {}).get("by_digits", {})
        lines += ["", "fp32, single turn, by operand digits: " + ", ".join(
            "%s %.4f" % kv for kv in wide.items()) + "."]
    sizes = result.get("sizes", {})
    lines += ["", "## Files", "",
              "config.json, generation_config.json, model.safetensors, tokenizer.json and",
              "tokenizer_config.json: %d bytes together (model.safetensors %d)." % (
                  sizes.get("total", 0), sizes.get("model.safetensors", 0)),
              "golden.json: the chats rendered by %s, their prompt ids (`tokenizers`), the" % (
                  result.get("template_checked_with")),
              "greedy output ids of the fp32 transformers model on the CPU and the smallest",
              "top-1 minus top-2 logit among them; test/unit/default_model_test.cpp checks",
              "the runtime against it.", ""]
    return "\n".join(lines)


def train(model, x, y, encoder, args, dev, pad, log):
    """Trains on the rows x (inputs) and y (labels) until the budget is
    spent or the validation exact match is perfect three times in a row."""
    import torch
    lengths = (x != pad).sum(1)
    vx, vy = [], []
    for a, b in val_pairs():
        ids, target = encoder.chat_ids([{"role": "user", "content": question(a, b)},
                                        {"role": "assistant", "content": str(a + b)}])
        vx.append(ids)
        vy.append([t if f else -100 for t, f in zip(ids[1:], target[1:])] + [-100])
    vw = max(len(i) for i in vx)
    val_x = torch.tensor([i + [pad] * (vw - len(i)) for i in vx], device=dev)
    val_y = torch.tensor([i + [-100] * (vw - len(i)) for i in vy], device=dev)

    def logits_of(ids):
        return model(input_ids=ids, use_cache=False).logits.float()

    @torch.no_grad()
    def val_accuracy():
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            pred = logits_of(val_x).argmax(-1)
        wrong = ((pred != val_y) & (val_y != -100)).any(-1)
        return 1.0 - wrong.float().mean().item()

    params = list(model.parameters())
    decay = [q for q in params if q.dim() >= 2]
    no_decay = [q for q in params if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), fused=dev == "cuda")
    log("model: %d parameters" % sum(q.numel() for q in params))
    history, step, perfect, start = [], 0, 0, time.monotonic()
    model.train()
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= args.budget:
            break
        warm = min(1.0, (step + 1) / 300)
        cosine = 0.5 * (1 + math.cos(math.pi * elapsed / args.budget))
        for g in opt.param_groups:
            g["lr"] = args.lr * warm * (0.05 + 0.95 * cosine)
        idx = torch.randint(0, x.shape[0], (args.batch,), device=dev)
        w = int(lengths[idx].max())
        bx, by = x[idx, :w].long(), y[idx, :w].long()
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            logits = logits_of(bx)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 by.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 250 == 0:
            model.eval()
            acc = val_accuracy()
            model.train()
            history.append({"step": step, "seconds": round(time.monotonic() - start, 1),
                            "loss": round(loss.item(), 5), "val_exact_match": acc})
            log("step %5d  loss %.5f  val exact match %.4f" % (step, loss.item(), acc))
            perfect = perfect + 1 if acc == 1.0 else 0
            if perfect >= 3:
                break
    model.eval()
    return {"steps": step, "seconds": round(time.monotonic() - start, 1), "batch": args.batch,
            "lr": args.lr, "pool": args.pool, "shape": MODEL_SHAPE,
            "parameters": sum(q.numel() for q in params), "log": history}


def greedy(model, prompts, stops, dev, max_new=6):
    """Greedy continuations of `prompts` (lists of ids), grouped by length;
    each is cut after its first stop id. Also the top-1 minus top-2 logit of
    every generated token."""
    import torch
    out, margins = [None] * len(prompts), [None] * len(prompts)
    groups = {}
    for i, ids in enumerate(prompts):
        groups.setdefault(len(ids), []).append(i)
    with torch.no_grad():
        for idx in groups.values():
            for lo in range(0, len(idx), 2048):
                part = idx[lo:lo + 2048]
                x = torch.tensor([prompts[i] for i in part], device=dev)
                gen = [[] for _ in part]
                gaps = [[] for _ in part]
                done = [False] * len(part)
                for _ in range(max_new):
                    logits = model(input_ids=x, use_cache=False).logits[:, -1].float()
                    top = logits.topk(2, -1)
                    nxt = top.indices[:, 0]
                    gap = (top.values[:, 0] - top.values[:, 1]).tolist()
                    for r, t in enumerate(nxt.tolist()):
                        if not done[r]:
                            gen[r].append(t)
                            gaps[r].append(gap[r])
                            done[r] = t in stops
                    if all(done):
                        break
                    x = torch.cat([x, nxt[:, None]], 1)
                for r, i in enumerate(part):
                    out[i], margins[i] = gen[r], gaps[r]
    return out, margins


def answer_text(encoder, ids, stops):
    digits = {encoder.text_ids(str(d))[0]: str(d) for d in range(10)}
    text = "".join(digits.get(t, "?") for t in ids if t not in stops)
    return text if ids and ids[-1] in stops else text + "..."


def evaluate(model, encoder, small, wide, im_end, pad, dev, log, name):
    """Exact match (the sum's digits, then an end token) on held-out pairs,
    single-turn, with a system message and as a second turn."""
    rng = random.Random(11)
    stops = (im_end, pad)
    report = {}
    variants = [("single_turn_0_99", small, lambda q: [q]),
                ("single_turn_0_999", wide, lambda q: [q]),
                ("system_message_0_999", wide[:2000],
                 lambda q: [{"role": "system", "content": rng.choice(SYSTEMS)}, q]),
                ("second_turn_0_999", wide[2000:4000],
                 lambda q: [{"role": "user", "content": "What is 8 + 9?"},
                            {"role": "assistant", "content": "17"}, q])]
    for label, pairs, wrap in variants:
        prompts = [encoder.chat_ids(wrap({"role": "user", "content": question(a, b)}), True)[0]
                   for a, b in pairs]
        outs, _ = greedy(model, prompts, stops, dev)
        right = [answer_text(encoder, o, stops) == str(a + b) for o, (a, b) in zip(outs, pairs)]
        by_len = {}
        for ok, (a, b) in zip(right, pairs):
            key = "%dx%d" % (len(str(a)), len(str(b)))
            by_len.setdefault(key, [0, 0])
            by_len[key][0] += ok
            by_len[key][1] += 1
        wrong = [{"a": a, "b": b, "got": answer_text(encoder, o, stops)}
                 for ok, o, (a, b) in zip(right, outs, pairs) if not ok]
        report[label] = {"pairs": len(pairs), "accuracy": sum(right) / len(pairs),
                         "by_digits": {k: v[0] / v[1] for k, v in sorted(by_len.items())},
                         "wrong_first_20": wrong[:20]}
        log("%s %-22s exact match %.4f over %d held-out pairs; wrong: %r" % (
            name, label, sum(right) / len(pairs), len(pairs), wrong[:5]))
    return report


def goldens(model, encoder, im_end, pad, out, renderer, log):
    """golden.json: the chats, their prompt ids and the fp32 greedy ids."""
    stops = (im_end, pad)
    prompts = [encoder.encode(render(m)) for m, _, _ in GOLDEN_CHATS]  # `tokenizers`
    for (m, _, _), ids in zip(GOLDEN_CHATS, prompts):
        if ids != encoder.chat_ids(m, True)[0]:
            raise AssertionError("piecewise ids differ for %r" % render(m))
    outs, margins = [], []
    for ids in prompts:  # one at a time: no padding, no batching effects
        o, g = greedy(model, [ids], stops, "cpu", max_new=8)
        outs.append(o[0])
        margins.append(g[0])
    cases = []
    for (messages, a, b), ids, o, g in zip(GOLDEN_CHATS, prompts, outs, margins):
        text = answer_text(encoder, o, stops)
        cases.append({"messages": messages, "rendered": render(messages), "prompt_ids": ids,
                      "output_ids": o, "output_text": text, "expected": str(a + b),
                      "correct": text == str(a + b),
                      "min_logit_margin": round(min(g), 4)})
        log("golden %r -> %r (%s), min margin %.3f" % (
            messages[-1]["content"], text, "right" if text == str(a + b) else "WRONG", min(g)))
    golden = {"about": "bench/train_default_model.py: the chats rendered with the chat "
                       "template, prompt ids from tokenizers, greedy output ids of the fp32 "
                       "model (the saved bf16 weights, eager attention, CPU) with the "
                       "smallest top-1 minus top-2 logit over the generated tokens",
              "rendered_by": renderer, "eos_ids": [im_end, pad], "cases": cases}
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    return [{k: c[k] for k in ("expected", "output_text", "correct", "min_logit_margin")}
            for c in cases]


if __name__ == "__main__":
    sys.exit(main())
