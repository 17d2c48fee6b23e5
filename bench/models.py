"""Random-weight test models with real shapes (built with transformers on the GPU machine).

No checkpoint can be downloaded there, so every model is built from a config
with random weights and saved as safetensors. Weights are drawn on the GPU with
a fixed seed; matrices get std 1/sqrt(fan_in) (embeddings std 1, norms 1 +
0.1 N(0,1)) so logits spread out instead of being near uniform.
"""
import math
import os

import torch
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

ARCH = {
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
}


def qwen2(hidden, layers, heads, kv, ffn, vocab, tied):
    return ("qwen2", dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                          num_key_value_heads=kv, intermediate_size=ffn, vocab_size=vocab,
                          tie_word_embeddings=tied, max_position_embeddings=32768,
                          rms_norm_eps=1e-6),
            dict(rope_type="default", rope_theta=1000000.0))


SHAPES = {
    "qwen2.5-0.5b": qwen2(896, 24, 14, 2, 4864, 151936, True),
    "qwen2.5-3b": qwen2(2048, 36, 16, 2, 11008, 151936, True),
    "qwen2.5-7b": qwen2(3584, 28, 28, 4, 18944, 152064, False),
    "llama-3.2-1b": ("llama", dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                                   num_key_value_heads=8, head_dim=64, intermediate_size=8192,
                                   vocab_size=128256, tie_word_embeddings=True,
                                   max_position_embeddings=131072, rms_norm_eps=1e-5),
                     dict(rope_type="llama3", rope_theta=500000.0, factor=32.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=8192)),
    # Head dims 80 and 96 (the flash kernel's other instantiations), four
    # layers each: Llama layouts with Phi-2-like and Phi-3-like attention.
    "llama-hd80": ("llama", dict(hidden_size=2560, num_hidden_layers=4, num_attention_heads=32,
                                 num_key_value_heads=8, head_dim=80, intermediate_size=6912,
                                 vocab_size=32000, tie_word_embeddings=False,
                                 max_position_embeddings=16384, rms_norm_eps=1e-5),
                   dict(rope_type="default", rope_theta=10000.0)),
    "llama-hd96": ("llama", dict(hidden_size=3072, num_hidden_layers=4, num_attention_heads=32,
                                 num_key_value_heads=8, head_dim=96, intermediate_size=8192,
                                 vocab_size=32064, tie_word_embeddings=False,
                                 max_position_embeddings=16384, rms_norm_eps=1e-5),
                   dict(rope_type="default", rope_theta=10000.0)),
    "qwen3-0.6b": ("qwen3", dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                                 num_key_value_heads=8, head_dim=128, intermediate_size=3072,
                                 vocab_size=151936, tie_word_embeddings=True,
                                 max_position_embeddings=40960, rms_norm_eps=1e-6),
                   dict(rope_type="default", rope_theta=1000000.0)),
}


def make_config(arch, fields, rope):
    config_cls, _ = ARCH[arch]
    try:
        return config_cls(**fields, rope_parameters=rope)
    except TypeError:  # transformers 4.x
        legacy = dict(rope)
        theta = legacy.pop("rope_theta")
        kind = legacy.pop("rope_type")
        return config_cls(**fields, rope_theta=theta,
                          rope_scaling=None if kind == "default" else dict(legacy, rope_type=kind))


@torch.no_grad()
def randomize(model, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen, device="cuda", dtype=torch.float32)
        if name.endswith("norm.weight"):
            p.copy_(1.0 + 0.1 * noise)
        elif name.endswith("bias"):
            p.copy_(0.2 * noise)
        elif "embed_tokens" in name:
            p.copy_(noise)
        else:
            p.copy_(noise / math.sqrt(p.shape[-1]))


def build(name, out_dir, seed=0):
    """Writes the model to out_dir (skips if it is already there)."""
    if os.path.exists(os.path.join(out_dir, "config.json")):
        return out_dir
    arch, fields, rope = SHAPES[name]
    config = make_config(arch, fields, rope)
    _, model_cls = ARCH[arch]
    with torch.device("cuda"):
        model = model_cls(config).to(torch.bfloat16)
    randomize(model, seed)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.config.torch_dtype = torch.bfloat16
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="4GB")
    del model
    torch.cuda.empty_cache()
    return out_dir
