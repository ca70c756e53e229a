"""Llama-shaped graphs with random weights, for timing what speculation costs past specserve-tiny.

usage: /usr/bin/python3 models/tooling/synthetic.py OUT_DIR [--sizes 100m,500m] [--dtypes fp32,int8]

Writes, per size, OUT_DIR/<size>/:
  config.json                     the shape (Hugging Face names)
  decoder_spec{sfx}.onnx          the target, speculative layout (graph.py), per dtype
  layer1{sfx}.onnx                the target's first layer alone (graph.py's shallow layout):
                                  what Kangaroo's draft runs before its adapter
  heads{sfx}.onnx                 4 Medusa-style heads (x + SiLU(x W) per head, then a projection
                                  onto a 2,048-token draft vocabulary, as specserve-tiny's heads)
  heads2x{sfx}.onnx               the same with a 2D-wide input (Hydra's heads read the hidden state
                                  and the previous token's embedding)
Weights are N(0, 0.02): timing only, nothing here predicts text. Used by bench/projection.ts.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import graph  # noqa: E402

SIZES = {
    # ~100 M parameters (GPT-2 small's width, grouped-query attention)
    "100m": dict(vocab=32000, hidden=768, layers=12, heads=12, kv_heads=4, head_dim=64, intermediate=2048),
    # ~450 M parameters (Llama-shaped: 128-wide heads)
    "500m": dict(vocab=32000, hidden=1536, layers=16, heads=12, kv_heads=4, head_dim=128, intermediate=4096),
}
DRAFT_VOCAB = 2048
HEADS = 4


def random_weights(cfg, rng):
    D, H, KV, hd, F = cfg.hidden, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.intermediate
    n = lambda *shape: (rng.standard_normal(shape, dtype=np.float32) * 0.02)
    w = {"model.embed_tokens.weight": n(cfg.vocab, D), "model.norm.weight": np.ones(D, np.float32)}
    for i in range(cfg.layers):
        p = f"model.layers.{i}"
        w.update({
            f"{p}.self_attn.q_proj.weight": n(H * hd, D), f"{p}.self_attn.k_proj.weight": n(KV * hd, D),
            f"{p}.self_attn.v_proj.weight": n(KV * hd, D), f"{p}.self_attn.o_proj.weight": n(D, H * hd),
            f"{p}.mlp.gate_proj.weight": n(F, D), f"{p}.mlp.up_proj.weight": n(F, D), f"{p}.mlp.down_proj.weight": n(D, F),
            f"{p}.input_layernorm.weight": np.ones(D, np.float32), f"{p}.post_attention_layernorm.weight": np.ones(D, np.float32),
        })
    return w


def heads_graph(D, width, dtype, rng):
    """HEADS heads over an input of `width` channels: r = x W_in (+ x when width = D), r + SiLU(r W),
    logits = r W_out onto DRAFT_VOCAB tokens."""
    g = graph._Graph()
    g.inputs.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "rows", width]))
    for i in range(HEADS):
        x = "x"
        if width != D:
            x = graph._dense(g, x, rng.standard_normal((width, D), dtype=np.float32) * 0.02, f"head{i}.in", dtype)
        h = graph._dense(g, x, rng.standard_normal((D, D), dtype=np.float32) * 0.02, f"head{i}.res", dtype)
        act = g.op("QuickGelu", [h], stem=f"head{i}.silu", domain="com.microsoft", alpha=1.0)
        r = g.op("Add", [x, act], stem=f"head{i}.add")
        logits = graph._dense(g, r, rng.standard_normal((D, DRAFT_VOCAB), dtype=np.float32) * 0.02, f"head{i}.out", dtype)
        g.op("Identity", [logits], outputs=[f"logits{i}"], stem=f"logits{i}")
        g.outputs.append(helper.make_tensor_value_info(f"logits{i}", TensorProto.FLOAT, ["batch", "rows", DRAFT_VOCAB]))
    model = helper.make_model(helper.make_graph(g.nodes, "heads", g.inputs, g.outputs, g.inits),
                              opset_imports=[helper.make_opsetid("", graph.OPSET), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--sizes", default="100m,500m")
    ap.add_argument("--dtypes", default="fp32,int8")
    a = ap.parse_args()
    for size in a.sizes.split(","):
        if size not in SIZES:
            sys.exit(f"synthetic.py: unknown size {size!r}; expected one of {', '.join(SIZES)}")
        s = SIZES[size]
        cfg = graph.ArchConfig(rope_theta=10000.0, norm_eps=1e-5, context=2048, tied=True, **s)
        out = os.path.join(a.out, size)
        os.makedirs(out, exist_ok=True)
        rng = np.random.default_rng(0)
        t0 = time.time()
        w = random_weights(cfg, rng)
        params = sum(x.size for x in w.values())
        hf = {"model_type": "llama", "vocab_size": cfg.vocab, "hidden_size": cfg.hidden, "num_hidden_layers": cfg.layers,
              "num_attention_heads": cfg.heads, "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_dim,
              "intermediate_size": cfg.intermediate, "max_position_embeddings": cfg.context, "tie_word_embeddings": True,
              "parameters": params, "note": "random weights, for timing (models/tooling/synthetic.py)"}
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(hf, f, indent=2)
        for dtype in a.dtypes.split(","):
            sfx = graph.SUFFIX[dtype]
            graph.save(graph.build(w, cfg, "speculative", dtype, split=1), os.path.join(out, f"decoder_spec{sfx}.onnx"))
            graph.save(graph.build(w, cfg, "shallow", dtype, split=1), os.path.join(out, f"layer1{sfx}.onnx"))
            graph.save(heads_graph(cfg.hidden, cfg.hidden, dtype, np.random.default_rng(1)), os.path.join(out, f"heads{sfx}.onnx"))
            graph.save(heads_graph(cfg.hidden, 2 * cfg.hidden, dtype, np.random.default_rng(2)), os.path.join(out, f"heads2x{sfx}.onnx"))
            print(f"[synthetic] {size} {dtype}: {params / 1e6:.0f} M parameters, "
                  f"{os.path.getsize(os.path.join(out, f'decoder_spec{sfx}.onnx')) / 1e6:.0f} MB target ({time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
