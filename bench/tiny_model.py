#!/usr/bin/env python3
"""A real (trained) small model for the agent benchmark's quality ablation.

No checkpoint can be downloaded on the GPU machine, so this trains one: a
Qwen2ForCausalLM (hidden 256, 4 layers, 4 heads / 2 KV heads, FFN 1024,
tied embeddings, the real Qwen2.5 tokenizer and chat template) on the task
of bench/agent/tasks.agent's `gated` workflow: "What is A + B?" for
0 <= A, B < 1000, as the executor sends it (the prompt wrapped in the chat
template as one user message; the answer is the digits of A + B, then
<|im_end|>). Pairs are split deterministically (bench/agent_bench.py
arith_split: 85% train, 5% validation, 10% test); the benchmark's tasks
are test pairs, never trained on.

Training stops when the validation exact-match accuracy reaches --target
(default 0.8) or after --budget seconds, whichever comes first: a model
that is right most of the time but not always, so that gating on its
uncertainty has something to catch. (3-digit addition written most
significant digit first needs the carries before it writes them, which a
small model learns gradually; its errors sit on the uncertain digits.)

It then evaluates the bf16 model as treni runs it (greedy, token by token,
the entropy of every generated token's full distribution in nats, the end
token included) on 1000 test pairs and prints: exact-match accuracy, the
mean max-entropy of right and wrong answers, the AUROC of max-entropy as a
predictor of a wrong answer, and what a max-entropy gate at --gate would
do (how many answers it sends to the tool, and the accuracy then). The
model is saved with save_pretrained (safetensors, bf16) plus the
tokenizer files.

  python3 bench/tiny_model.py --tokenizer build/tokenizers/qwen2_5 --out /tmp/models/tiny-add \\
      [--budget 90] [--target 0.8] [--json OUT]

Needs torch and transformers (the GPU machine); bench/agent_bench.py (the
task definitions) is standard library only.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import agent_bench  # noqa: E402  (stdlib only: the task's split and prompt)

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def chat_prompt(tok, text):
    """What the executor renders for a one-message chat (generation prompt added)."""
    try:
        rendered = tok.apply_chat_template([{"role": "user", "content": text}],
                                           add_generation_prompt=True, tokenize=False)
        if isinstance(rendered, str):
            return rendered
    except Exception as e:  # noqa: BLE001 (fall back to Qwen2.5's ChatML, said so)
        print("apply_chat_template failed (%s); using Qwen2.5's ChatML" % e, file=sys.stderr)
    return ("<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n"
            "<|im_start|>assistant\n" % (QWEN_SYSTEM, text))


def auroc(wrong_scores, right_scores):
    """P(score of a wrong answer > score of a right one), ties half."""
    if not wrong_scores or not right_scores:
        return float("nan")
    pairs = [(s, 1) for s in wrong_scores] + [(s, 0) for s in right_scores]
    pairs.sort()
    rank_sum, i = 0.0, 0
    while i < len(pairs):  # average ranks over ties
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        rank = (i + 1 + j) / 2.0
        rank_sum += rank * sum(1 for k in range(i, j) if pairs[k][1])
        i = j
    nw, nr = len(wrong_scores), len(right_scores)
    return (rank_sum - nw * (nw + 1) / 2.0) / (nw * nr)


def gate_report(records, gate):
    """What a max-entropy gate does: answers over the gate go to the tool."""
    n = len(records)
    sent = [r for r in records if r["max_entropy"] > gate or not r["text"].isdigit()]
    kept = [r for r in records if not (r["max_entropy"] > gate or not r["text"].isdigit())]
    return {"gate": gate, "sent_to_tool": len(sent) / n,
            "accuracy_gated": (len(sent) + sum(r["correct"] for r in kept)) / n,
            "accuracy_format_only": sum(r["correct"] or not r["text"].isdigit()
                                        for r in records) / n,
            "wrong_kept": sum(not r["correct"] for r in kept)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer", required=True, help="directory with the Qwen2.5 tokenizer.json "
                   "and tokenizer_config.json")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--budget", type=float, default=90.0, help="training seconds at most")
    p.add_argument("--target", type=float, default=0.8, help="stop at this validation accuracy")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--gate", type=float, default=0.5)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the training log and evaluation here")
    args = p.parse_args()

    import torch
    import transformers
    from transformers import AutoTokenizer, Qwen2ForCausalLM
    import models  # bench/models.py: the config across transformers versions

    torch.manual_seed(args.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    if not isinstance(im_end, int) or not isinstance(pad, int) or im_end < 0 or pad < 0:
        sys.exit("%s is not a Qwen2.5 tokenizer (no <|im_end|> / <|endoftext|>)" % args.tokenizer)

    arch, fields, rope = models.qwen2(256, 4, 4, 2, 1024, 151936, True)
    config = models.make_config(arch, fields, rope)
    config.eos_token_id = im_end
    config.pad_token_id = pad
    model = Qwen2ForCausalLM(config).to(dev)

    # The template rendered once around a placeholder (rendering per example
    # is slow); the whole prompt is still tokenized in one piece.
    parts = chat_prompt(tok, "\x00").split("\x00")
    if len(parts) != 2:
        sys.exit("the chat template does not render the user message once: %r" % parts)
    before, after = parts
    print("torch %s, transformers %s, %s; prompt: %r" % (
        torch.__version__, transformers.__version__, dev, before + "What is 1 + 2?" + after),
        flush=True)

    def encode(pairs):
        """Prompt ids and answer ids (digits, then <|im_end|>) per pair."""
        prompts = [before + agent_bench.arith_prompt(a, b) + after for a, b in pairs]
        answers = [str(a + b) for a, b in pairs]
        p_ids = tok(prompts, add_special_tokens=False)["input_ids"]
        a_ids = tok(answers, add_special_tokens=False)["input_ids"]
        return p_ids, [ids + [im_end] for ids in a_ids]

    def batch_tensors(pairs):
        p_ids, a_ids = encode(pairs)
        seqs = [pi + ai for pi, ai in zip(p_ids, a_ids)]
        width = max(len(s) for s in seqs)
        x = torch.full((len(seqs), width), pad, dtype=torch.long)
        rows, cols, targets = [], [], []
        for r, (pi, ai) in enumerate(zip(p_ids, a_ids)):
            x[r, :len(pi) + len(ai)] = torch.tensor(pi + ai)
            for k, t in enumerate(ai):  # position len(pi)+k-1 predicts ai[k]
                rows.append(r)
                cols.append(len(pi) + k - 1)
                targets.append(t)
        # Right padding and a causal mask: no attention mask needed.
        return (x.to(dev), torch.tensor(rows, device=dev), torch.tensor(cols, device=dev),
                torch.tensor(targets, device=dev))

    def answer_logits(x, rows, cols):
        hidden = model.model(input_ids=x, use_cache=False).last_hidden_state
        return model.lm_head(hidden[rows, cols]).float()

    import random
    rng = random.Random(args.seed)

    def train_pairs(n):
        out = []
        while len(out) < n:
            a, b = rng.randrange(1000), rng.randrange(1000)
            if agent_bench.arith_split(a, b) == "train":
                out.append((a, b))
        return out

    val = agent_bench.arith_pairs(512, "val", seed=11)
    val_t = batch_tensors(val)

    @torch.no_grad()
    def val_accuracy():
        x, rows, cols, targets = val_t
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            pred = answer_logits(x, rows, cols).argmax(-1)
        wrong = torch.zeros(len(val), device=dev)
        wrong.index_add_(0, rows, (pred != targets).float())
        return (wrong == 0).float().mean().item()  # every answer token right

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    log, start, step, acc = [], time.monotonic(), 0, 0.0
    model.train()
    while True:
        x, rows, cols, targets = batch_tensors(train_pairs(args.batch))
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 200)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            loss = torch.nn.functional.cross_entropy(answer_logits(x, rows, cols), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        elapsed = time.monotonic() - start
        if step % 100 == 0 or elapsed >= args.budget:
            model.eval()
            acc = val_accuracy()
            model.train()
            log.append({"step": step, "seconds": round(elapsed, 1), "loss": round(loss.item(), 4),
                        "val_accuracy": acc})
            print("step %5d  %5.1f s  loss %.4f  val exact match %.3f" % (
                step, elapsed, loss.item(), acc), flush=True)
            if acc >= args.target or elapsed >= args.budget:
                break
    train_seconds = time.monotonic() - start

    # Evaluate the bf16 model, greedy, as treni generates (fp32 without a
    # GPU: only for trying the script out).
    model = model.to(torch.bfloat16 if dev == "cuda" else torch.float32).eval()
    test = agent_bench.arith_pairs(args.test, "test")
    p_ids, _ = encode(test)
    records = [None] * len(test)
    by_len = {}
    for i, ids in enumerate(p_ids):
        by_len.setdefault(len(ids), []).append(i)
    with torch.no_grad():
        for idx in by_len.values():
            x = torch.tensor([p_ids[i] for i in idx], device=dev)
            done = torch.zeros(len(idx), dtype=torch.bool, device=dev)
            out = [[] for _ in idx]
            ents = [[] for _ in idx]
            for _ in range(6):  # the workflow's max_tokens
                hidden = model.model(input_ids=x, use_cache=False).last_hidden_state[:, -1]
                logits = model.lm_head(hidden).float()
                logp = torch.log_softmax(logits, -1)
                entropy = -(logp.exp() * logp).sum(-1)
                nxt = logits.argmax(-1)
                for r in range(len(idx)):
                    if not done[r]:
                        out[r].append(nxt[r].item())
                        ents[r].append(entropy[r].item())
                done |= (nxt == im_end) | (nxt == pad)
                if bool(done.all()):
                    break
                x = torch.cat([x, nxt[:, None]], 1)
            for r, i in enumerate(idx):
                ids = [t for t in out[r] if t not in (im_end, pad)]
                text = tok.decode(ids)
                a, b = test[i]
                records[i] = {"a": a, "b": b, "text": text,
                              "correct": text == str(a + b) and out[r][-1] in (im_end, pad),
                              "max_entropy": max(ents[r])}

    right = [r["max_entropy"] for r in records if r["correct"]]
    wrong = [r["max_entropy"] for r in records if not r["correct"]]
    mean = lambda v: sum(v) / len(v) if v else float("nan")  # noqa: E731
    result = {
        "model": {"arch": "Qwen2ForCausalLM", "hidden": 256, "layers": 4, "heads": 4,
                  "kv_heads": 2, "ffn": 1024, "vocab": 151936,
                  "params": sum(q.numel() for q in model.parameters())},
        "train": {"steps": step, "seconds": round(train_seconds, 1), "batch": args.batch,
                  "target": args.target, "budget_s": args.budget, "log": log},
        "test": {"pairs": len(records), "accuracy": len(right) / len(records),
                 "mean_max_entropy_right": mean(right), "mean_max_entropy_wrong": mean(wrong),
                 "auroc_entropy_predicts_wrong": auroc(wrong, right),
                 "gate": gate_report(records, args.gate),
                 "gate_sweep": [gate_report(records, g) for g in (0.1, 0.25, 0.5, 1.0, 2.0)],
                 "first_20": records[:20]},
    }
    t = result["test"]
    print("held-out exact match %.3f over %d test pairs (%d steps, %.0f s)" % (
        t["accuracy"], len(records), step, train_seconds))
    print("max entropy: right %.3f, wrong %.3f nats; AUROC(entropy -> wrong) %.3f" % (
        t["mean_max_entropy_right"], t["mean_max_entropy_wrong"],
        t["auroc_entropy_predicts_wrong"]))
    g = t["gate"]
    print("gate %.2f: %.0f%% to the tool, accuracy %.3f gated vs %.3f format check only" % (
        args.gate, 100 * g["sent_to_tool"], g["accuracy_gated"], g["accuracy_format_only"]))
    print("gate sweep (gate: to the tool, accuracy): " + ", ".join(
        "%.2f: %.0f%% %.3f" % (r["gate"], 100 * r["sent_to_tool"], r["accuracy_gated"])
        for r in t["gate_sweep"]))

    os.makedirs(args.out, exist_ok=True)
    if hasattr(model.config, "torch_dtype"):
        model.config.torch_dtype = torch.bfloat16
    model.save_pretrained(args.out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(args.tokenizer, name), os.path.join(args.out, name))
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [im_end, pad], "pad_token_id": pad}, f)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
