"""A float64 NumPy forward of a Hugging Face Llama / Mistral / Qwen2 / Qwen3 checkpoint, written from
transformers' modelling code (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
Qwen3ForCausalLM): the reference
convert.py's graphs are tested against.

usage: /usr/bin/python3 models/tooling/hf_reference.py HF_DIR --ids '[1, 2, 3]' [--generate N] [--out FILE]
writes JSON {"ids": prompt, "logits": [positions][vocab] for the prompt, "greedy": N tokens chosen
by argmax, each after a full forward over everything before it}.

Independent on purpose: it shares only the safetensors reader with convert.py and graph.py, and
computes RoPE scaling, biases and tying again from config.json here, so a misreading of the config
in the converter shows up as a difference rather than being repeated. No KV cache, no fusing, no
folding of heads: the plain attention of the modelling code, for small test checkpoints.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors  # noqa: E402


def rope_inverse_frequencies(config, head_dim):
    """transformers' ROPE_INIT_FUNCTIONS for the rope types "default", "linear" and "llama3"."""
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    base = config.get("rope_theta", 10000.0)
    inv = 1.0 / base ** (np.arange(0, head_dim, 2).astype(np.float64) / head_dim)
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / scaling["factor"]
    if kind != "llama3":
        raise SystemExit(f"hf_reference: rope type {kind!r} not implemented")
    factor = scaling["factor"]
    low_freq_factor, high_freq_factor = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    out = np.empty_like(inv)
    for i, freq in enumerate(inv):
        wavelen = 2 * math.pi / freq
        if wavelen < old_context_len / high_freq_factor:
            out[i] = freq
        elif wavelen > old_context_len / low_freq_factor:
            out[i] = freq / factor
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out[i] = (1 - smooth) * freq / factor + smooth * freq
    return out


class Reference:
    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            self.config = c = json.load(f)
        self.ckpt = safetensors.open_checkpoint(folder)
        self.kind = c["model_type"]
        self.layers = c["num_hidden_layers"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.heads
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.inv_freq = rope_inverse_frequencies(c, self.head_dim)
        # Qwen2Attention: q/k/v biases, o_proj none; LlamaAttention and Qwen3Attention: all four
        # when attention_bias
        own_bias = self.kind in ("llama", "qwen3") and c.get("attention_bias", False)
        self.qkv_bias = self.kind == "qwen2" or own_bias
        self.o_bias = own_bias
        # Qwen3Attention: RMSNorm over each head's q and k (q_norm, k_norm) before RoPE
        self.qk_norm = self.kind == "qwen3"
        self.tied = c.get("tie_word_embeddings", False)
        self.cache = {}

    def w(self, name):
        if name not in self.cache:
            self.cache[name] = self.ckpt.read(name).astype(np.float64)
        return self.cache[name]

    def rms_norm(self, x, name):
        variance = np.mean(x * x, axis=-1, keepdims=True)
        return self.w(name) * (x / np.sqrt(variance + self.eps))

    def linear(self, x, name, bias):
        y = x @ self.w(name + ".weight").T
        return y + self.w(name + ".bias") if bias else y

    def rope(self, x, positions):
        """x [heads, T, hd] rotated as apply_rotary_pos_emb: x * cos + rotate_half(x) * sin."""
        freqs = positions[:, None].astype(np.float64) * self.inv_freq[None, :]
        emb = np.concatenate([freqs, freqs], axis=-1)
        half = self.head_dim // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * np.cos(emb) + rotated * np.sin(emb)

    def attention(self, x, i):
        p = f"model.layers.{i}.self_attn"
        T, hd = x.shape[0], self.head_dim
        q = self.linear(x, f"{p}.q_proj", self.qkv_bias).reshape(T, self.heads, hd).transpose(1, 0, 2)
        k = self.linear(x, f"{p}.k_proj", self.qkv_bias).reshape(T, self.kv_heads, hd).transpose(1, 0, 2)
        v = self.linear(x, f"{p}.v_proj", self.qkv_bias).reshape(T, self.kv_heads, hd).transpose(1, 0, 2)
        if self.qk_norm:
            q, k = self.rms_norm(q, f"{p}.q_norm.weight"), self.rms_norm(k, f"{p}.k_norm.weight")
        positions = np.arange(T)
        q, k = self.rope(q, positions), self.rope(k, positions)
        # repeat_kv: query head h reads key/value head h // (heads / kv_heads)
        rep = self.heads // self.kv_heads
        k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        scores = np.where(np.tril(np.ones((T, T), bool))[None], scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        out = (probs @ v).transpose(1, 0, 2).reshape(T, self.heads * hd)
        return self.linear(out, f"{p}.o_proj", self.o_bias)

    def mlp(self, x, i):
        p = f"model.layers.{i}.mlp"
        gate = self.linear(x, f"{p}.gate_proj", False)
        silu = gate / (1.0 + np.exp(-gate))
        return self.linear(silu * self.linear(x, f"{p}.up_proj", False), f"{p}.down_proj", False)

    def logits(self, ids):
        """[T, vocab] logits after each of `ids`."""
        h = self.w("model.embed_tokens.weight")[np.asarray(ids)]
        for i in range(self.layers):
            h = h + self.attention(self.rms_norm(h, f"model.layers.{i}.input_layernorm.weight"), i)
            h = h + self.mlp(self.rms_norm(h, f"model.layers.{i}.post_attention_layernorm.weight"), i)
        h = self.rms_norm(h, "model.norm.weight")
        head = self.w("model.embed_tokens.weight" if self.tied else "lm_head.weight")
        return h @ head.T

    def greedy(self, ids, n):
        ids = list(ids)
        for _ in range(n):
            ids.append(int(np.argmax(self.logits(ids)[-1])))
        return ids[-n:] if n else []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--ids", required=True, help="prompt token ids, a JSON list")
    ap.add_argument("--generate", type=int, default=0, help="greedy tokens to continue with")
    ap.add_argument("--out", help="JSON file to write (default: stdout)")
    a = ap.parse_args()
    ref = Reference(a.folder)
    ids = json.loads(a.ids)
    result = {"ids": ids, "logits": ref.logits(ids).tolist(), "greedy": ref.greedy(ids, a.generate)}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f)
    else:
        json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
