"""Step 3 of the build: write the trained target's graphs and the Hugging Face-style folder.

usage: /usr/bin/python3 models/tooling/export.py WORK_DIR MODEL_DIR [--shallow-layers N]

  MODEL_DIR/onnx/model.onnx        standard Optimum decoder layout (transformers.js can load it)
  MODEL_DIR/onnx/decoder_spec.onnx speculation-ready layout (graph.py has both contracts)
  MODEL_DIR/config.json, generation_config.json   (tokenizer files come from prepare.py)
  MODEL_DIR/reference.json         torch outputs the Node-side check compares the ONNX files with

--shallow-layers N: after how many blocks decoder_spec.onnx's `hidden_shallow` output is taken (the
Kangaroo drafter's exit layer; default: the checkpoint's). An export choice, not a training one: the
weights and every other output are the same for any N.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import graph  # noqa: E402
from model import Config, Decoder  # noqa: E402
from target import hf_weights  # noqa: E402
from write_graphs import sha256  # noqa: E402,F401  (kangaroo.py and chimera.py import it from here)

def arch_config(cfg):
    return graph.ArchConfig(vocab=cfg.vocab, hidden=cfg.d_model, layers=cfg.n_layers, heads=cfg.n_heads, kv_heads=cfg.n_kv_heads,
                            head_dim=cfg.head_dim, intermediate=cfg.ffn_hidden, rope_theta=cfg.rope_theta, norm_eps=cfg.norm_eps,
                            context=cfg.context, tied=cfg.tied, qkv_bias=cfg.qkv_bias)


def retie_lm_head(mo, emb_name):
    """torch stores the tied head's transpose as a second initializer: point the MatMul back at
    the embedding with Gemm(transB=1) and drop the copy (saves vocab*d*4 bytes)."""
    init = {i.name: i for i in mo.graph.initializer}
    E = numpy_helper.to_array(init[emb_name])
    fixed = 0
    for i in list(mo.graph.initializer):
        if i.name != emb_name and list(i.dims) == [E.shape[1], E.shape[0]] and np.array_equal(numpy_helper.to_array(i), E.T):
            for n in mo.graph.node:
                if n.op_type == "MatMul" and n.input[1] == i.name:
                    n.op_type = "Gemm"
                    n.input[1] = emb_name
                    n.attribute.extend([helper.make_attribute("transB", 1)])
                    fixed += 1
            mo.graph.initializer.remove(i)
    return fixed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("out")
    ap.add_argument("--shallow-layers", type=int, default=None)
    a = ap.parse_args()
    work, out = a.work, a.out
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ck = torch.load(os.path.join(work, "target.pt"), map_location="cpu")
    cfg = Config(**ck["config"])
    if a.shallow_layers is not None:
        assert 1 <= a.shallow_layers < cfg.n_layers, "--shallow-layers must leave layers on both sides"
        cfg.shallow_layers = a.shallow_layers
    model = Decoder(cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    L, KV, HD = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    t0 = time.time()

    # ---- the fp32 target graphs (graph.py; write_graphs.py adds the 8- and 4-bit ones) ----
    w, arch = hf_weights(model), arch_config(cfg)
    for layout, name in (("speculative", "decoder_spec.onnx"), ("standard", "model.onnx")):
        path = os.path.join(out, "onnx", name)
        graph.save(graph.build(w, arch, layout, "fp32", split=cfg.shallow_layers), path)
        print(f"[export] {name}: {os.path.getsize(path) / 1e6:.1f} MB", flush=True)

    # ---- HF-style config ----
    tok = json.load(open(os.path.join(out, "tokenizer.json")))
    eos = next(t["id"] for t in tok["added_tokens"] if t["content"] == "<|endoftext|>")
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": cfg.d_model, "intermediate_size": cfg.ffn_hidden, "num_hidden_layers": L,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": KV, "head_dim": HD,
        "vocab_size": cfg.vocab, "max_position_embeddings": cfg.context, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "hidden_act": "silu", "bos_token_id": eos, "eos_token_id": eos,
        "tie_word_embeddings": True, "torch_dtype": "float32", "use_cache": True,
        "specserve": {
            "speculative_onnx": "onnx/decoder_spec.onnx",
            "standard_onnx": "onnx/model.onnx",
            "past_layout": "head-major",
            "shallow_layers": cfg.shallow_layers,
            "trained_steps": ck["step"],
            "training_minutes": round(ck["elapsed"] / 60, 1),
        },
    }
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2)
    json.dump({"bos_token_id": eos, "eos_token_id": eos, "do_sample": False, "max_length": cfg.context},
              open(os.path.join(out, "generation_config.json"), "w"), indent=2)

    # ---- torch reference for the Node-side check (prefill logits + greedy continuation) ----
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    data = np.fromfile(os.path.join(work, "valid.u16"), dtype=np.uint16)
    prompt = [int(x) for x in data[100:124]]
    with torch.no_grad():
        lg, h, sh, _ = model(torch.tensor([prompt]))
        seq = list(prompt)
        for _ in range(16):
            nxt = int(model(torch.tensor([seq]))[0][0, -1].argmax())
            seq.append(nxt)
    ref = {"prompt": prompt, "positions": [0, 11, 23],
           "logits": [lg[0, p].tolist() for p in (0, 11, 23)],
           "hidden": [h[0, p].tolist() for p in (0, 11, 23)],
           "hidden_shallow": [sh[0, p].tolist() for p in (0, 11, 23)],
           "greedy": seq[len(prompt):]}
    json.dump(ref, open(os.path.join(out, "reference.json"), "w"))

    # LANTERN neighbour sets, restricted to a whitelist of equivalence classes (methods.md §6): tokens
    # that decode to the same text up to case and surrounding whitespace, never digits; each list is
    # ordered by L2 distance in the target's embedding space
    import bpe
    enc = bpe.Encoder([tuple(m.split(" ")) for m in tok["model"]["merges"]])
    E = model.embed.weight.detach()
    classes = {}
    for t in range(cfg.vocab):
        if t == eos:
            continue
        key = enc.decode([t]).strip().casefold()
        if key and not any(ch.isdigit() for ch in key) and "\ufffd" not in key:
            classes.setdefault(key, []).append(t)
    neighbours = {}
    for members in classes.values():
        if len(members) < 2:
            continue
        for t in members:
            others = [o for o in members if o != t]
            others.sort(key=lambda o: float((E[o] - E[t]).pow(2).sum()))
            neighbours[str(t)] = others
    os.makedirs(os.path.join(out, "lantern"), exist_ok=True)
    json.dump({"rule": "same text up to case and surrounding whitespace; no digits; sorted by embedding L2 distance",
               "neighbours": neighbours}, open(os.path.join(out, "lantern", "neighbours.json"), "w"))
    print(f"[export] LANTERN: {len(neighbours)} tokens have whitelisted neighbours", flush=True)

    # a slice of held-out text (validation split) for perplexity / KV-cache benchmarks in Node
    text = enc.decode([int(x) for x in data[:4000]])
    with open(os.path.join(out, "heldout.txt"), "w") as f:
        f.write(text)
    print(f"[export] done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
