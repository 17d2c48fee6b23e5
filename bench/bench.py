#!/usr/bin/env python3
"""Decode speed and TTFT: Treni vs transformers eager vs a gpt-fast-style peer.

    python3 bench/bench.py --treni build/bin/treni --models-dir /tmp/models \
        --out $OUT qwen2.5-0.5b qwen2.5-3b qwen2.5-7b

Batch 1, bf16, a 32-token prompt and 128 new tokens (greedy), plus TTFT of a
2048-token prompt. Every number is a median over repeats after warm-up, timed
after torch.cuda.synchronize(); Treni reports its own (CUDA-synchronised) times.
The floor is weight bytes / measured device-to-device copy bandwidth.

The peer follows gpt-fast's model.py: static KV cache, fused QKV (+bias) and
gate/up weights, SDPA, and the decode step under
torch.compile(mode="reduce-overhead", fullgraph=True); prefill runs eager.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
import transformers

sys.path.insert(0, os.path.dirname(__file__))
import models  # noqa: E402

PROMPT, NEW, LONG = 32, 128, 2048


def sync_time():
    torch.cuda.synchronize()
    return time.perf_counter()


def copy_bandwidth():
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    times = []
    for _ in range(10):
        t = sync_time()
        y.copy_(x)
        times.append(sync_time() - t)
    del x, y
    return 2 * (1 << 30) / statistics.median(times)


def prompt_ids(vocab, n, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (1, n), generator=g)


# ---------------------------------------------------------------- treni
def run_treni(treni, path, prompt_len, new, repeat, env):
    cmd = [treni, "run", path, "--device", "gpu", "--prompt-length", str(prompt_len),
           "--max-tokens", str(new), "--repeat", str(repeat), "--json"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    line = [l for l in proc.stdout.splitlines() if l.startswith("{")][-1]
    result = json.loads(line)
    result["process_wall_s"] = wall
    return result, proc.stderr


# ---------------------------------------------------------------- transformers eager
def bench_hf(path, vocab):
    cls = getattr(transformers, json.load(open(os.path.join(path, "config.json")))["architectures"][0])
    model = cls.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()
    ids = prompt_ids(vocab, PROMPT).cuda()
    out = {}
    with torch.no_grad():
        model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)  # warm-up
        ttfts, rates = [], []
        for _ in range(3):
            t = sync_time()
            model(ids, use_cache=True)
            ttfts.append(sync_time() - t)
            t = sync_time()
            model.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)
            total = sync_time() - t
            rates.append((NEW - 1) / max(total - ttfts[-1], 1e-9))
        out["ttft_ms"] = statistics.median(ttfts) * 1e3
        out["decode_tok_s"] = statistics.median(rates)
        long_ids = prompt_ids(vocab, LONG).cuda()
        model(long_ids)
        t = sync_time()
        model(long_ids)
        out["ttft_2048_ms"] = (sync_time() - t) * 1e3
    del model
    torch.cuda.empty_cache()
    return out


# ---------------------------------------------------------------- gpt-fast-style peer
class Peer(torch.nn.Module):
    """Qwen2/Llama decoder with a static KV cache, fused QKV and gate/up."""

    def __init__(self, hf, max_seq):
        super().__init__()
        c = hf.config
        self.heads, self.kv = c.num_attention_heads, c.num_key_value_heads
        self.hd = getattr(c, "head_dim", None) or c.hidden_size // self.heads
        self.eps = c.rms_norm_eps
        m = hf.model
        self.embed = m.embed_tokens.weight
        self.layers = []
        for layer in m.layers:
            a, f = layer.self_attn, layer.mlp
            wqkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
            bqkv = (torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
                    if a.q_proj.bias is not None else None)
            self.layers.append(dict(
                ln1=layer.input_layernorm.weight, ln2=layer.post_attention_layernorm.weight,
                wqkv=wqkv, bqkv=bqkv, wo=a.o_proj.weight,
                w13=torch.cat([f.gate_proj.weight, f.up_proj.weight]), w2=f.down_proj.weight,
                k=torch.zeros(1, self.kv, max_seq, self.hd, dtype=torch.bfloat16, device="cuda"),
                v=torch.zeros(1, self.kv, max_seq, self.hd, dtype=torch.bfloat16, device="cuda")))
        self.norm = m.norm.weight
        self.head = hf.lm_head.weight
        theta = hf.config.rope_parameters["rope_theta"] if hasattr(hf.config, "rope_parameters") and hf.config.rope_parameters else hf.config.rope_theta
        inv = 1.0 / (theta ** (torch.arange(0, self.hd, 2, device="cuda").float() / self.hd))
        freqs = torch.outer(torch.arange(max_seq, device="cuda").float(), inv)
        self.cos = torch.cat([freqs, freqs], -1).cos().to(torch.bfloat16)
        self.sin = torch.cat([freqs, freqs], -1).sin().to(torch.bfloat16)
        self.mask = torch.tril(torch.ones(max_seq, max_seq, dtype=torch.bool, device="cuda"))

    def rms(self, x, w):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * w

    def rope(self, x, pos):
        cos, sin = self.cos[pos][None, None], self.sin[pos][None, None]
        half = x.shape[-1] // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rot * sin

    def forward(self, idx, pos):
        x = F.embedding(idx, self.embed)
        t = idx.shape[1]
        q_size, kv_size = self.heads * self.hd, self.kv * self.hd
        mask = self.mask[pos][None, None]
        for L in self.layers:
            h = self.rms(x, L["ln1"])
            qkv = F.linear(h, L["wqkv"], L["bqkv"])
            q, k, v = qkv.split([q_size, kv_size, kv_size], -1)
            q = self.rope(q.view(1, t, self.heads, self.hd).transpose(1, 2), pos)
            k = self.rope(k.view(1, t, self.kv, self.hd).transpose(1, 2), pos)
            v = v.view(1, t, self.kv, self.hd).transpose(1, 2)
            L["k"][:, :, pos] = k
            L["v"][:, :, pos] = v
            y = F.scaled_dot_product_attention(q, L["k"], L["v"], attn_mask=mask, enable_gqa=True)
            x = x + F.linear(y.transpose(1, 2).reshape(1, t, q_size), L["wo"])
            h = self.rms(x, L["ln2"])
            g, u = F.linear(h, L["w13"]).chunk(2, -1)
            x = x + F.linear(F.silu(g) * u, L["w2"])
        return F.linear(self.rms(x[:, -1:], self.norm), self.head)


def bench_peer(path, vocab):
    cls = getattr(transformers, json.load(open(os.path.join(path, "config.json")))["architectures"][0])
    hf = cls.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()
    out = {}
    with torch.no_grad():
        peer = Peer(hf, 4096)
        decode = torch.compile(peer.forward, mode="reduce-overhead", fullgraph=True)
        ids = prompt_ids(vocab, PROMPT).cuda()

        def generate():
            t = sync_time()
            logits = peer(ids, torch.arange(PROMPT, device="cuda"))
            tok = logits[:, -1].argmax(-1, keepdim=True)
            ttft = sync_time() - t
            t = sync_time()
            for i in range(NEW - 1):
                logits = decode(tok, torch.tensor([PROMPT + i], device="cuda"))
                tok = logits[:, -1].argmax(-1, keepdim=True)
            return ttft, (NEW - 1) / (sync_time() - t)

        t = time.perf_counter()
        generate()  # compiles
        out["compile_s"] = time.perf_counter() - t
        generate()
        runs = [generate() for _ in range(3)]
        out["ttft_ms"] = statistics.median(r[0] for r in runs) * 1e3
        out["decode_tok_s"] = statistics.median(r[1] for r in runs)
        long_ids = prompt_ids(vocab, LONG).cuda()
        peer(long_ids, torch.arange(LONG, device="cuda"))
        t = sync_time()
        peer(long_ids, torch.arange(LONG, device="cuda"))
        out["ttft_2048_ms"] = (sync_time() - t) * 1e3
    del peer, hf, decode
    torch.cuda.empty_cache()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--treni", required=True)
    parser.add_argument("--models-dir", default="/tmp/models")
    parser.add_argument("--out", default=".")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    treni = os.path.abspath(args.treni)
    bandwidth = copy_bandwidth()
    print(f"device-to-device copy: {bandwidth / 1e12:.3f} TB/s on {torch.cuda.get_device_name()}", flush=True)
    rows = []
    for name in args.models:
        path = models.build(name, os.path.join(args.models_dir, name))
        config = json.load(open(os.path.join(path, "config.json")))
        vocab = config["vocab_size"]
        weight_bytes = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
                           if f.endswith(".safetensors"))
        floor_ms = weight_bytes / bandwidth * 1e3
        row = dict(model=name, weight_bytes=weight_bytes, floor_ms=floor_ms)
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, TRENI_CACHE_DIR=cache)
            cold, _ = run_treni(treni, path, PROMPT, 2, 1, env)       # empty cache: MLIR + NVRTC
            warm, _ = run_treni(treni, path, PROMPT, 2, 1, env)       # cached package
            main_run, log = run_treni(treni, path, PROMPT, NEW, 5, env)
            long_run, _ = run_treni(treni, path, LONG, 1, 3, env)
        row["treni"] = dict(decode_tok_s=main_run["decode_tok_s"], ms_per_token=main_run["ms_per_token"],
                            ttft_ms=main_run["ttft_ms"], ttft_2048_ms=long_run["ttft_ms"],
                            first_load_to_token_s=cold["process_wall_s"],
                            warm_load_to_token_s=warm["process_wall_s"],
                            cold_nvrtc_compiles=cold["nvrtc_compiles"], warm_nvrtc_compiles=warm["nvrtc_compiles"],
                            weight_gb_s=main_run["weight_gb_s"], warm_source=warm["source"])
        row["treni"]["prefill_2048_tflops"] = 2 * weight_bytes / 2 * LONG / (long_run["ttft_ms"] / 1e3) / 1e12
        print(json.dumps(row), flush=True)
        if not args.no_peers:
            row["hf_eager"] = bench_hf(path, vocab)
            print(json.dumps(row["hf_eager"]), flush=True)
            row["peer"] = bench_peer(path, vocab)
            print(json.dumps(row["peer"]), flush=True)
        rows.append(row)
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(dict(bandwidth=bandwidth, gpu=torch.cuda.get_device_name(), rows=rows), f, indent=1)

    print("\nBENCH model          floor ms  | treni tok/s ms/tok %floor TTFT32 TTFT2048 cold-load warm-load | "
          "eager tok/s TTFT32 | peer tok/s TTFT32 compile_s")
    for r in rows:
        t = r["treni"]
        line = (f"BENCH {r['model']:<14} {r['floor_ms']:8.3f}  | {t['decode_tok_s']:10.1f} {t['ms_per_token']:6.3f} "
                f"{100 * r['floor_ms'] / t['ms_per_token']:5.1f}% {t['ttft_ms']:6.2f} {t['ttft_2048_ms']:8.1f} "
                f"{t['first_load_to_token_s']:8.2f}s {t['warm_load_to_token_s']:8.2f}s |")
        if "hf_eager" in r:
            line += (f" {r['hf_eager']['decode_tok_s']:10.1f} {r['hf_eager']['ttft_ms']:6.2f} | "
                     f"{r['peer']['decode_tok_s']:9.1f} {r['peer']['ttft_ms']:6.2f} {r['peer']['compile_s']:7.1f}")
        print(line)


if __name__ == "__main__":
    main()
