"""Writes Hugging Face-layout checkpoints (config.json, safetensors, tokenizer files) for tests and
for handing specserve's own models to Hugging Face tools.

usage: /usr/bin/python3 models/tooling/checkpoint.py OUT_DIR [--model-type llama|mistral|qwen2|qwen3]
           [--dtype bf16|f16|f32] [--shards N] [--hidden 64] [--layers 2] [--heads 4] [--kv-heads 2]
           [--head-dim N] [--intermediate 128] [--vocab 4160] [--tied] [--attention-bias]
           [--rope-scaling none|linear|llama3] [--original-context 64] [--context 256] [--seed 0]
       /usr/bin/python3 models/tooling/checkpoint.py OUT_DIR --from-model-folder models/specserve-tiny [--dtype bf16] [--shards 2]

Random mode: a small model with random weights, scaled so that logits are far from uniform (greedy
choices have clear margins, so fp32 graphs and the float64 reference pick the same tokens), and
specserve-tiny's tokenizer (4,096 tokens; --vocab above that pads the embedding as real checkpoints
often do). --omit NAME and --wrong-shape NAME spoil one tensor, for tests of the converter's checks.
--sliding-window N writes that window into config.json.

--from-model-folder: the folder's fp32 weights (weights.load) under its own config.json, less the
specserve block: the checkpoint `npm run convert` turns back into the same model.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_config  # noqa: E402
import safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "models", "specserve-tiny")
DTYPES = {"f32": ("F32", "float32"), "f16": ("F16", "float16"), "bf16": ("BF16", "bfloat16")}
ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                 "qwen3": "Qwen3ForCausalLM"}
EOS = 4095  # specserve-tiny's <|endoftext|>


def random_config(a):
    head_dim = a.head_dim or a.hidden // a.heads
    c = {"architectures": [ARCHITECTURES[a.model_type]], "model_type": a.model_type, "vocab_size": a.vocab,
         "hidden_size": a.hidden, "intermediate_size": a.intermediate, "num_hidden_layers": a.layers,
         "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "head_dim": head_dim,
         "max_position_embeddings": a.context, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
         "bos_token_id": EOS, "eos_token_id": EOS, "tie_word_embeddings": a.tied, "torch_dtype": DTYPES[a.dtype][1]}
    if a.rope_scaling == "llama3":
        c["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": a.original_context}
    elif a.rope_scaling == "linear":
        c["rope_scaling"] = {"type": "linear", "factor": 4.0}
    if a.attention_bias:
        c["attention_bias"] = True
    if a.model_type == "mistral":
        c["sliding_window"] = a.sliding_window  # None: off (MistralConfig's default when absent is 4096)
    elif a.sliding_window is not None:
        c.update(sliding_window=a.sliding_window, use_sliding_window=True, max_window_layers=0)
    return c


def random_weights(c, rng):
    D, H, KV, hd, F, V = (c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"],
                          c["intermediate_size"], c["vocab_size"])
    qkv_bias = c["model_type"] == "qwen2" or c.get("attention_bias", False)

    def n(*shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def norm(size=D):
        return (1.0 + n(size, std=0.1)).astype(np.float32)

    # inputs of unit scale into every projection: 1.5/sqrt(fan-in) for q, k, v and gate/up gives
    # peaked attention and a working MLP; outputs at 0.5/sqrt(fan-in) keep the residual stream sane
    w = {"model.embed_tokens.weight": n(V, D, std=1.0)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        w[f"{p}.input_layernorm.weight"] = norm()
        w[f"{p}.self_attn.q_proj.weight"] = n(H * hd, D, std=1.5 / np.sqrt(D))
        w[f"{p}.self_attn.k_proj.weight"] = n(KV * hd, D, std=1.5 / np.sqrt(D))
        w[f"{p}.self_attn.v_proj.weight"] = n(KV * hd, D, std=1.0 / np.sqrt(D))
        if qkv_bias:
            for proj, size in (("q", H * hd), ("k", KV * hd), ("v", KV * hd)):
                w[f"{p}.self_attn.{proj}_proj.bias"] = n(size, std=0.1)
        w[f"{p}.self_attn.o_proj.weight"] = n(D, H * hd, std=0.5 / np.sqrt(H * hd))
        if c["model_type"] == "qwen3":  # RMSNorm over each head's q and k
            w[f"{p}.self_attn.q_norm.weight"] = norm(hd)
            w[f"{p}.self_attn.k_norm.weight"] = norm(hd)
        if c.get("attention_bias") and c["model_type"] in ("llama", "qwen3"):
            w[f"{p}.self_attn.o_proj.bias"] = n(D, std=0.1)
        w[f"{p}.post_attention_layernorm.weight"] = norm()
        w[f"{p}.mlp.gate_proj.weight"] = n(F, D, std=1.5 / np.sqrt(D))
        w[f"{p}.mlp.up_proj.weight"] = n(F, D, std=1.5 / np.sqrt(D))
        w[f"{p}.mlp.down_proj.weight"] = n(D, F, std=0.5 / np.sqrt(F))
    w["model.norm.weight"] = norm()
    if not c["tie_word_embeddings"]:
        w["lm_head.weight"] = n(V, D, std=0.25)
    # the rotary table transformers once saved with every checkpoint: converters must skip it
    w["model.layers.0.self_attn.rotary_emb.inv_freq"] = (1.0 / 10000 ** (np.arange(0, hd, 2) / hd)).astype(np.float32)
    return w


def write_checkpoint(out, config, weights, dtype, shards, tokenizer_dir, generation):
    os.makedirs(out, exist_ok=True)
    st = DTYPES[dtype][0]
    if shards > 1:
        safetensors.write_sharded(out, weights, st, shards)
    else:
        safetensors.write(os.path.join(out, safetensors.SINGLE), weights, st, metadata={"format": "pt"})
    for f in hf_config.TOKENIZER_FILES:
        if os.path.exists(os.path.join(tokenizer_dir, f)):
            shutil.copyfile(os.path.join(tokenizer_dir, f), os.path.join(out, f))
    for name, obj in (("config.json", config), ("generation_config.json", generation)):
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")


def from_model_folder(folder):
    """(config.json without its specserve block, fp32 weights, generation_config.json) of a model folder."""
    import weights  # reads the fp32 graph back (or the checkpoint it was converted from)

    with open(os.path.join(folder, "config.json")) as f:
        config = {k: v for k, v in json.load(f).items() if k != "specserve"}
    _, w = weights.load(folder)
    gen_path = os.path.join(folder, "generation_config.json")
    gen = json.load(open(gen_path)) if os.path.exists(gen_path) else {}
    return config, w, gen


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--from-model-folder", metavar="DIR", help="write this specserve model folder's weights instead of random ones")
    ap.add_argument("--model-type", choices=list(ARCHITECTURES), default="llama")
    ap.add_argument("--dtype", choices=list(DTYPES), default="f32")
    ap.add_argument("--shards", type=int, default=1, help="safetensors files (1: model.safetensors, else an index and shards)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=None, help="default hidden / heads")
    ap.add_argument("--intermediate", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=4160, help="embedding rows; the tokenizer has 4096")
    ap.add_argument("--tied", action="store_true", help="tie_word_embeddings (no lm_head.weight)")
    ap.add_argument("--attention-bias", action="store_true", help="llama, qwen3: q/k/v/o biases")
    ap.add_argument("--rope-scaling", choices=["none", "linear", "llama3"], default="none")
    ap.add_argument("--original-context", type=int, default=64, help="llama3 scaling's original_max_position_embeddings")
    ap.add_argument("--context", type=int, default=256, help="max_position_embeddings")
    ap.add_argument("--sliding-window", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--omit", action="append", default=[], metavar="NAME", help="leave this tensor out")
    ap.add_argument("--wrong-shape", action="append", default=[], metavar="NAME", help="drop this tensor's last row")
    a = ap.parse_args()
    if a.from_model_folder:
        config, w, gen = from_model_folder(a.from_model_folder)
        config["torch_dtype"] = DTYPES[a.dtype][1]
        tokenizer_dir = a.from_model_folder
    else:
        config = random_config(a)
        w = random_weights(config, np.random.default_rng(a.seed))
        gen = {"bos_token_id": EOS, "eos_token_id": EOS}
        tokenizer_dir = TINY
    for name in a.omit + a.wrong_shape:
        if name not in w:
            sys.exit(f"checkpoint.py: no tensor {name}")
    for name in a.omit:
        del w[name]
    for name in a.wrong_shape:
        w[name] = w[name][:-1]
    write_checkpoint(a.out, config, w, a.dtype, a.shards, tokenizer_dir, gen)
    print(f"[checkpoint] {a.out}: {len(w)} tensors, {sum(x.size for x in w.values()) / 1e6:.2f} M parameters, "
          f"{a.dtype}, {max(1, a.shards)} file(s)", flush=True)


if __name__ == "__main__":
    main()
