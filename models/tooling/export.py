"""Step 3 of the build: export the trained target twice, write the Hugging Face-style folder.

usage: /usr/bin/python3 models/tooling/export.py WORK_DIR MODEL_DIR [--shallow-layers N]

  MODEL_DIR/onnx/model.onnx        standard Optimum decoder layout (transformers.js can load it)
  MODEL_DIR/onnx/decoder_spec.onnx speculation-ready layout (see model.py and models/README.md)
  MODEL_DIR/config.json, generation_config.json   (tokenizer files come from prepare.py)
  MODEL_DIR/reference.json         torch outputs the Node-side check compares the ONNX files with

--shallow-layers N: after how many blocks decoder_spec.onnx's `hidden_shallow` output is taken (the
Kangaroo drafter's exit layer; default: the checkpoint's). An export choice, not a training one: the
weights and every other output are the same for any N.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Config, Decoder, causal_bias  # noqa: E402

OPSET = 17  # the highest torch 1.13 exports


class SpecWrapper(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, position_ids, attention_bias, *past_flat):
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(len(past_flat) // 2)]
        logits, h, shallow, new = self.m(input_ids, position_ids, attention_bias, past)
        out = [logits, h, shallow]
        for k, v in new:
            out += [k, v]
        return tuple(out)


class OptimumWrapper(nn.Module):
    """attention_mask [B, past+T] (1 = real token); causal mask built in the graph; K/V as
    [B, KV, S, hd] and present = past + new, like Hugging Face Optimum's decoder exports."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask, position_ids, *past_flat):
        T = input_ids.shape[1]
        S = attention_mask.shape[1]
        q_pos = torch.arange(T) + (S - T)
        k_pos = torch.arange(S)
        allowed = (k_pos.unsqueeze(0) <= q_pos.unsqueeze(1)).unsqueeze(0) & (attention_mask.unsqueeze(1) > 0)
        bias = ((1.0 - allowed.to(torch.float32)) * -1e9).unsqueeze(1)  # [B,1,T,S]
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(len(past_flat) // 2)]
        logits, _h, _s, new = self.m(input_ids, position_ids, bias, past)
        out = [logits]
        for (pk, pv), (k, v) in zip(past, new):
            out += [torch.cat([pk, k.transpose(1, 2)], 2), torch.cat([pv, v.transpose(1, 2)], 2)]
        return tuple(out)


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


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(wrapper, args, path, in_names, out_names, dyn):
    torch.onnx.export(wrapper, args, path, input_names=in_names, output_names=out_names, dynamic_axes=dyn,
                      opset_version=OPSET, do_constant_folding=True)
    mo = onnx.load(path)
    n = retie_lm_head(mo, "m.embed.weight")
    onnx.checker.check_model(mo)
    onnx.save(mo, path)
    print(f"[export] {os.path.basename(path)}: {os.path.getsize(path) / 1e6:.1f} MB, re-tied {n} head node(s)", flush=True)


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

    # ---- speculation-ready layout ----
    B, T, P = 2, 3, 4
    ids = torch.randint(0, cfg.vocab, (B, T))
    pos = torch.arange(P, P + T).expand(B, T).contiguous()
    bias = causal_bias(T, P).expand(B, 1, T, P + T).contiguous()
    past = [torch.randn(B, KV, P, HD) for _ in range(2 * L)]
    ins = ["input_ids", "position_ids", "attention_bias"]
    outs = ["logits", "hidden", "hidden_shallow"]
    dyn = {"input_ids": {0: "batch", 1: "new"}, "position_ids": {0: "batch", 1: "new"},
           "attention_bias": {0: "batch", 2: "new", 3: "total"},
           "logits": {0: "batch", 1: "new"}, "hidden": {0: "batch", 1: "new"}, "hidden_shallow": {0: "batch", 1: "new"}}
    for i in range(L):
        for kv in ("key", "value"):
            ins.append(f"past_key_values.{i}.{kv}")
            dyn[ins[-1]] = {0: "batch", 2: "past"}
            outs.append(f"new_key_values.{i}.{kv}")
            dyn[outs[-1]] = {0: "batch", 1: "new"}
    export(SpecWrapper(model), (ids, pos, bias, *past), os.path.join(out, "onnx", "decoder_spec.onnx"), ins, outs, dyn)

    # ---- standard Optimum layout ----
    mask = torch.ones(B, P + T, dtype=torch.int64)
    past_std = [torch.randn(B, KV, P, HD) for _ in range(2 * L)]
    ins = ["input_ids", "attention_mask", "position_ids"]
    outs = ["logits"]
    dyn = {"input_ids": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {0: "batch_size", 1: "sequence_length"},
           "logits": {0: "batch_size", 1: "sequence_length"}}
    for i in range(L):
        for kv in ("key", "value"):
            ins.append(f"past_key_values.{i}.{kv}")
            dyn[ins[-1]] = {0: "batch_size", 2: "past_sequence_length"}
            outs.append(f"present.{i}.{kv}")
            dyn[outs[-1]] = {0: "batch_size", 2: "total_sequence_length"}
    export(OptimumWrapper(model), (ids, mask, pos, *past_std), os.path.join(out, "onnx", "model.onnx"), ins, outs, dyn)

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
            "kv_layout": "past [batch, kv_heads, past, head_dim], new [batch, tokens, kv_heads, head_dim]",
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
