#!/usr/bin/env python3
"""Writes a checkpoint directory of a real model shape with no weights in it.

`treni compile DIR --emit=cuda|plan|mlir` needs only config.json and the
safetensors header, so this writes both and leaves the tensor data as a hole
(a sparse file: the 7B shape takes a few KB of disk). Standard library only,
so it runs on the development machine, where transformers is not installed.
Used to show that a refactor leaves the generated CUDA of the bench shapes
byte-identical:

  python3 bench/shape_dir.py qwen2.5-0.5b /tmp/shapes/qwen2.5-0.5b
  build/bin/treni compile /tmp/shapes/qwen2.5-0.5b --emit=cuda > before.cu

The shapes are those of ../shared/GPU.md (bench/models.py has the same
table for the transformers side).
"""

import argparse
import json
import os
import struct
import sys

# name: (hidden, layers, heads, kv heads, ffn, vocab, tied, architecture)
SHAPES = {
    "qwen2.5-0.5b": (896, 24, 14, 2, 4864, 151936, True, "qwen2"),
    "qwen2.5-1.5b": (1536, 28, 12, 2, 8960, 151936, True, "qwen2"),
    "qwen2.5-3b": (2048, 36, 16, 2, 11008, 151936, True, "qwen2"),
    "qwen2.5-7b": (3584, 28, 28, 4, 18944, 152064, False, "qwen2"),
    "qwen3-0.6b": (1024, 28, 16, 8, 3072, 151669, True, "qwen3"),
    "llama-3.2-1b": (2048, 16, 32, 8, 8192, 128256, True, "llama"),
}


def tensors(hidden, layers, heads, kv_heads, ffn, vocab, tied, arch):
    head_dim = 128 if arch == "qwen3" else hidden // heads
    q, kv = heads * head_dim, kv_heads * head_dim
    out = [("model.embed_tokens.weight", [vocab, hidden]), ("model.norm.weight", [hidden])]
    if not tied:
        out.append(("lm_head.weight", [vocab, hidden]))
    for i in range(layers):
        p = "model.layers.%d." % i
        out += [(p + "input_layernorm.weight", [hidden]),
                (p + "post_attention_layernorm.weight", [hidden]),
                (p + "self_attn.q_proj.weight", [q, hidden]),
                (p + "self_attn.k_proj.weight", [kv, hidden]),
                (p + "self_attn.v_proj.weight", [kv, hidden]),
                (p + "self_attn.o_proj.weight", [hidden, q]),
                (p + "mlp.gate_proj.weight", [ffn, hidden]),
                (p + "mlp.up_proj.weight", [ffn, hidden]),
                (p + "mlp.down_proj.weight", [hidden, ffn])]
        if arch == "qwen2":
            out += [(p + "self_attn.q_proj.bias", [q]), (p + "self_attn.k_proj.bias", [kv]),
                    (p + "self_attn.v_proj.bias", [kv])]
        if arch == "qwen3":
            out += [(p + "self_attn.q_norm.weight", [head_dim]),
                    (p + "self_attn.k_norm.weight", [head_dim])]
    return out, head_dim


def config(name, hidden, layers, heads, kv_heads, ffn, vocab, tied, arch, head_dim):
    cfg = {
        "architectures": [{"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                           "llama": "LlamaForCausalLM"}[arch]],
        "model_type": arch, "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "intermediate_size": ffn, "vocab_size": vocab, "tie_word_embeddings": tied,
        "hidden_act": "silu", "rms_norm_eps": 1e-6, "max_position_embeddings": 32768,
        "rope_theta": 1000000.0, "torch_dtype": "bfloat16", "_shape": name,
    }
    if arch == "qwen3":
        cfg["head_dim"] = head_dim
    if arch == "llama":
        cfg.update(rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=131072)
    return cfg


def write(name, out_dir):
    hidden, layers, heads, kv_heads, ffn, vocab, tied, arch = SHAPES[name]
    names, head_dim = tensors(hidden, layers, heads, kv_heads, ffn, vocab, tied, arch)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for tensor, shape in sorted(names):
        size = 2
        for d in shape:
            size *= d
        header[tensor] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        f.truncate(8 + len(blob) + offset)  # the data stays a hole
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config(name, hidden, layers, heads, kv_heads, ffn, vocab, tied, arch, head_dim),
                  f, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("out_dir")
    args = ap.parse_args()
    write(args.shape, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
