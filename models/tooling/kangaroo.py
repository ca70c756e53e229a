"""Kangaroo adapter (docs/methods.md §3): self-speculation with double early exit, trained by
self-distillation on the frozen target, exported with the split target graphs it drafts and
verifies with.

usage: /usr/bin/python3 models/tooling/kangaroo.py WORK_DIR MODEL_DIR [--steps N] [--seq 256]
       [--batch 8] [--selfgen 256] [--draft-vocab N] [--threads N]
then:  /usr/bin/python3 models/tooling/write_graphs.py MODEL_DIR --kangaroo-only   (the split graphs)

The target is MODEL_DIR's (target.py); WORK_DIR holds the token splits, checkpoint and log (heads.py).
The drafter is the target's own first `l` layers (l = the exported model's `shallow_layers` in
MODEL_DIR/config.json, after which decoder_spec.onnx gives `hidden_shallow`: 1 here) plus an
adapter: x + Attention(RMSNorm(x)), then a final RMSNorm, then the target's frozen LM head. The
adapter's attention has the target's shape (heads, KV heads, head_dim, RoPE frequencies).
The adapter maps the layer-l residual state to the final one at the SAME position; its label is the
target's softmax at that position (soft cross-entropy, as the reference trains it). The final norm
starts from the target's final norm and the attention output projection from zero, so training
starts at plain early exit (layer l -> final norm -> LM head) and only improves on it.

Exports (MODEL_DIR/kangaroo/; the embedding is stored once, as external data embed.f32):
  draft.onnx    one drafting step for new tokens after a cached prefix:
                input_ids [B,T], position_ids [B,T], attention_bias [B,1,T,P+T],
                past_key_values.{0..l-1}.{key,value} [B,KV,P,hd], adapter_past.{key,value} [B,KV,P,hd]
                -> hidden_shallow [B,T,D], new_key_values.{0..l-1}.{key,value} [B,T,KV,hd],
                   adapter_new.{key,value} [B,T,KV,hd], top_ids [B,T] int64, top_probs [B,T]
                (top-1 over the --draft-vocab most frequent corpus tokens, softmax over them)
  adapter.onnx  adapter K/V for committed rows whose shallow state the engine already has:
                hidden_shallow [B,T,D], position_ids [B,T] -> adapter_new.{key,value} [B,T,KV,hd]
  kangaroo.json manifest (files, sha256, dims, parameters, held-out agreement, training)
write_graphs.py then adds, per weight format the folder has, deep{sfx}.onnx (the target's layers
l..L-1 + final norm + LM head, fed the shallow states) and draft{sfx}.onnx (this draft graph with
its shallow layers rewritten as the target's own kernels), and lists them in kangaroo.json.
"""
import argparse
import dataclasses
import json
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Attention, RMSNorm, causal_bias, rotate_half  # noqa: E402
from write_graphs import sha256  # noqa: E402
from heads import (EMBED_FILE, DraftLMHead, device_of, draft_vocab, draft_vocab_record, drafter_args,  # noqa: E402
                   drafter_setup, heldout_continuations, heldout_windows, lm_head_note, mean_over_batches, mixed_batch, selfgen_note,
                   selfgen_sequences, share_embedding, soft_ce)
from loop import train_resumable  # noqa: E402
from quantize import DESCRIPTION as QUANT_DESCRIPTION, quantize_graph  # noqa: E402

OPSET = 17
EMBED_NAME = "m.embed.weight"  # the embedding initializer's name in these exports (torch module path)


class Adapter(nn.Module):
    """One attention block without MLP and two RMSNorms (the reference's AdapterModel)."""

    def __init__(self, c, final_norm):
        super().__init__()
        self.norm_in = RMSNorm(c.d_model, c.norm_eps)
        # the target's attention shape, without the biases some targets have: the zero output
        # projection must make the adapter start as plain early exit
        self.attn = Attention(dataclasses.replace(c, qkv_bias=False, o_bias=False, qk_norm=False))
        for w in (self.attn.wq, self.attn.wk, self.attn.wv):
            nn.init.normal_(w.weight, std=0.02)
        nn.init.zeros_(self.attn.wo.weight)
        self.norm_out = RMSNorm(c.d_model, c.norm_eps)
        with torch.no_grad():
            self.norm_out.weight.copy_(final_norm.weight)

    def forward(self, x, cos, sin, bias, pk=None, pv=None):
        a, k, v = self.attn(self.norm_in(x), cos, sin, bias, pk, pv)
        return self.norm_out(x + a), k, v


def shallow_forward(m, l, ids, cos, sin, bias, past):
    x = m.embed(ids)
    new = []
    for i in range(l):
        pk, pv = past[i] if past is not None else (None, None)
        x, k, v = m.layers[i](x, cos, sin, bias, pk, pv)
        new.append((k, v))
    return x, new


def deep_forward(m, l, x, cos, sin, bias, past):
    new = []
    for j, i in enumerate(range(l, m.c.n_layers)):
        pk, pv = past[j] if past is not None else (None, None)
        x, k, v = m.layers[i](x, cos, sin, bias, pk, pv)
        new.append((k, v))
    h = m.norm(x)
    return m.lm_head(h), h, new


class DraftExport(nn.Module):
    def __init__(self, m, adapter, l, vocab):
        super().__init__()
        self.m, self.adapter, self.l = m, adapter, l
        # the LM head projects onto the draft vocabulary (heads.py's draft_vocab): half the bytes
        self.lm = DraftLMHead(m.lm_weight.detach(), vocab, k=1)

    def forward(self, input_ids, position_ids, attention_bias, *flat):
        l = self.l
        past = [(flat[2 * i], flat[2 * i + 1]) for i in range(l)]
        apk, apv = flat[2 * l], flat[2 * l + 1]
        cos, sin = self.m.rope(position_ids)
        x, new = shallow_forward(self.m, l, input_ids, cos, sin, attention_bias, past)
        z, ak, av = self.adapter(x, cos, sin, attention_bias, apk, apv)
        top_i, top_lp = self.lm(z)
        top_i, top_p = top_i[..., 0], top_lp[..., 0].exp()
        out = [x]
        for k, v in new:
            out += [k, v]
        return tuple(out + [ak, av, top_i, top_p])


class AdapterKvExport(nn.Module):
    def __init__(self, m, adapter):
        super().__init__()
        self.m, self.adapter = m, adapter

    def forward(self, hidden_shallow, position_ids):
        cos, sin = self.m.rope(position_ids)
        a = self.adapter.attn
        B, T, _ = hidden_shallow.shape
        x = self.adapter.norm_in(hidden_shallow)
        k = a.wk(x).view(B, T, a.kv, a.hd)
        v = a.wv(x).view(B, T, a.kv, a.hd)
        k = k * cos + rotate_half(k) * sin
        return k, v


def export_all(m, adapter, l, vocab, out_dir):
    c = m.c
    KV, HD, D = c.n_kv_heads, c.head_dim, c.d_model
    B, T, P = 2, 3, 4
    ids = torch.randint(0, c.vocab, (B, T))
    pos = torch.arange(P, P + T).expand(B, T).contiguous()
    bias = causal_bias(T, P).expand(B, 1, T, P + T).contiguous()
    bt = {0: "batch", 1: "new"}
    bp = {0: "batch", 2: "past"}  # past K/V head-major (model.Attention)
    dyn_bias = {0: "batch", 2: "new", 3: "total"}

    # draft step
    ins = ["input_ids", "position_ids", "attention_bias"]
    dyn = {"input_ids": bt, "position_ids": bt, "attention_bias": dyn_bias}
    outs = ["hidden_shallow"]
    for i in range(l):
        for kv in ("key", "value"):
            ins.append(f"past_key_values.{i}.{kv}")
            outs.append(f"new_key_values.{i}.{kv}")
            dyn[ins[-1]], dyn[outs[-1]] = bp, bt
    for kv in ("key", "value"):
        ins.append(f"adapter_past.{kv}")
        outs.append(f"adapter_new.{kv}")
        dyn[ins[-1]], dyn[outs[-1]] = bp, bt
    outs += ["top_ids", "top_probs"]
    dyn.update({"hidden_shallow": bt, "top_ids": bt, "top_probs": bt})
    past = [torch.randn(B, KV, P, HD) for _ in range(2 * l + 2)]
    path = os.path.join(out_dir, "draft.onnx")
    torch.onnx.export(DraftExport(m, adapter, l, vocab), (ids, pos, bias, *past), path, input_names=ins, output_names=outs,
                      dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=True)
    share_embedding(path, m.embed.weight.detach(), EMBED_NAME)
    # int8 adapter and LM head (quantize.py: a draft call is bound by weight bytes); the shallow
    # layers stay fp32, bit for bit the target's: the engine verifies with their states and K/V
    quantize_graph(path, exact=[o for o in outs if o == "hidden_shallow" or o.startswith("new_key_values.")])

    # adapter K/V for rows the engine computed
    path = os.path.join(out_dir, "adapter.onnx")
    torch.onnx.export(AdapterKvExport(m, adapter), (torch.randn(B, T, D), pos), path,
                      input_names=["hidden_shallow", "position_ids"], output_names=["adapter_new.key", "adapter_new.value"],
                      dynamic_axes={"hidden_shallow": bt, "position_ids": bt, "adapter_new.key": bt, "adapter_new.value": bt},
                      opset_version=OPSET, do_constant_folding=True)
    quantize_graph(path)  # the same int8 adapter weights as draft.onnx's (same weights, same rounding)
    # the deep graphs are graph.py's (write_graphs.py): the target's own kernels, bit for bit


def losses(m, adapter, l, x, start=0, with_loss=True):
    """Soft CE of the adapter's early exit against the target at the same position (None when not
    with_loss); top-1 agreement of early exit with and without the adapter (over the positions
    from `start` on)."""
    B, T = x.shape
    with torch.no_grad():
        pos = torch.arange(T, device=x.device).unsqueeze(0).expand(B, T)
        cos, sin = m.rope(pos)
        bias = causal_bias(T, device=x.device)
        logits, _h, shallow, _ = m(x)
        p = F.softmax(logits, dim=-1)
        want = logits.argmax(-1)
        plain_exit = m.lm_head(m.norm(shallow)).argmax(-1)
    z, _, _ = adapter(shallow, cos, sin, bias)
    lg = m.lm_head(z)
    loss = soft_ce(lg, p) if with_loss else None
    with torch.no_grad():
        q = F.softmax(lg, dim=-1)[:, start:]
        p, want, plain_exit = p[:, start:], want[:, start:], plain_exit[:, start:]
        top_p, top_i = q.max(-1)
        acc = (top_i == want).float().mean().item()
        base = (plain_exit == want).float().mean().item()
        overlap = torch.minimum(p, q).sum(-1).mean().item()  # the reference's acceptance proxy
        conf = top_p.flatten().cpu().numpy()
        hit = (top_i == want).flatten().cpu().numpy()
    return loss, acc, base, overlap, conf, hit


def check_split(m, l):
    """The split graphs' composition must equal the full target (torch side; Node checks ONNX)."""
    dev = device_of(m)
    x = torch.randint(0, m.c.vocab, (1, 24), generator=torch.Generator().manual_seed(1)).to(dev)
    full, h, shallow, _ = m(x)
    pos = torch.arange(24, device=dev).unsqueeze(0)
    cos, sin = m.rope(pos)
    bias = causal_bias(24, device=dev)
    s, _ = shallow_forward(m, l, x, cos, sin, bias, None)
    logits, _, _ = deep_forward(m, l, s, cos, sin, bias, None)
    err = (logits - full).abs().max().item()
    assert err < 1e-4, f"shallow+deep differs from the full target by {err}"
    return err


def parser():
    """The command line, with this script's defaults (train_drafters.py reads them too)."""
    ap = drafter_args(argparse.ArgumentParser(), steps=600, seq=256, batch=8, lr=2e-3, seed=2404)
    ap.add_argument("--threshold", type=float, default=0.05,
                    help="stop-drafting confidence eta written to the manifest; this adapter's confidence is low because "
                         "the target's own distribution is flat (held-out by-confidence table), so the reference's 0.6 would "
                         "stop after one token almost always")
    return ap


def main(argv=None):
    a = parser().parse_args(argv)
    m, cfg, train, valid = drafter_setup(a)
    dev = device_of(m)
    # the exit layer is the exported target's: the engine feeds the adapter decoder_spec.onnx's hidden_shallow
    l = cfg.shallow_layers
    if not 1 <= l < cfg.n_layers:
        sys.exit(f"kangaroo: config.json's specserve.shallow_layers is {l}; the exit layer must leave layers on both sides of it")
    gen = selfgen_sequences(a.work, m, train, a.selfgen, "kangaroo") if a.selfgen else None
    print(f"[kangaroo] exit layer {l} of {cfg.n_layers}; shallow+deep == full (max |diff| {check_split(m, l):.2e})", flush=True)
    adapter = Adapter(cfg, m.norm).to(dev)
    opt = torch.optim.AdamW(adapter.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    n_params = sum(p.numel() for p in adapter.parameters())
    print(f"[kangaroo] adapter {n_params / 1e6:.3f} M parameters (+ the target's LM head), {a.steps} steps of "
          f"{a.batch}x{a.seq} tokens on {dev}", flush=True)

    def train_step(step):
        x = mixed_batch(train, gen, step, a.seed, a.batch, a.seq, dev)
        loss, acc, base, overlap, _, _ = losses(m, adapter, l, x)
        record = {"top1": round(acc, 4), "early_exit_top1": round(base, 4), "overlap": round(overlap, 4)}
        return loss, record, f"top1 {acc:.3f} (plain early exit {base:.3f}) overlap {overlap:.3f}"

    step, elapsed = train_resumable("kangaroo", adapter, opt, os.path.join(a.work, "kangaroo.pt"),
                                    os.path.join(a.work, "kangaroo_log.jsonl"), a.steps, a.lr, train_step, state_key="adapter")

    # held-out: agreement with the target's argmax, and how confidence separates hits from misses
    adapter.eval()
    accs, bases, overlaps, confs, hits = [], [], [], [], []
    with torch.no_grad():
        for x in heldout_windows(valid, a.seq, dev):
            _, acc, base, overlap, conf, hit = losses(m, adapter, l, x, with_loss=False)
            accs.append(acc)
            bases.append(base)
            overlaps.append(overlap)
            confs.append(conf)
            hits.append(hit)
    conf, hit = np.concatenate(confs), np.concatenate(hits)
    # on text like decoding sees: held-out prefixes, then the target's own greedy continuation
    with torch.no_grad():
        vgen, prefix = heldout_continuations(a.work, m, valid, a.heldout_prompts)
        greedy_acc = mean_over_batches(lambda x: losses(m, adapter, l, x, start=prefix, with_loss=False)[1], vgen)
    by_threshold = {}
    for eta in (0.2, 0.4, 0.6, 0.8):
        above = conf >= eta
        by_threshold[str(eta)] = {"fraction_above": round(float(above.mean()), 4),
                                  "top1_above": round(float(hit[above].mean()) if above.any() else 0.0, 4),
                                  "top1_below": round(float(hit[~above].mean()) if (~above).any() else 0.0, 4)}
    out_dir = os.path.join(a.model_dir, "kangaroo")
    os.makedirs(out_dir, exist_ok=True)
    m.cpu()
    adapter.cpu()
    vocab, vocab_record = draft_vocab(train, cfg.vocab, a.draft_vocab)
    export_all(m, adapter, l, vocab, out_dir)
    files = ["draft.onnx", "adapter.onnx", EMBED_FILE]
    medusa = os.path.join(a.model_dir, "heads", "medusa.json")
    medusa_params = json.load(open(medusa))["parameters"] if os.path.exists(medusa) else None
    manifest = {
        "kind": "kangaroo", "exit_layer": l, "threshold": a.threshold, "max_steps": 6, "layers": cfg.n_layers, "hidden_size": cfg.d_model,
        "kv_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
        "hidden": f"residual stream after layer {l} (pre-norm)",
        "files": {f: {"bytes": os.path.getsize(os.path.join(out_dir, f)), "sha256": sha256(os.path.join(out_dir, f))} for f in files},
        "parameters": int(n_params), "medusa_parameters": medusa_params,
        "lm_head": lm_head_note(cfg) + "; draft.onnx projects onto the draft vocabulary",
        "draft_vocab": draft_vocab_record(vocab_record, vocab, vgen[:, prefix:].cpu()),
        "weights": "adapter and LM head: " + QUANT_DESCRIPTION + "; the shallow layers fp32, the target's own; held-out figures are of the fp32 adapter",
        "training": {"steps": step, "seq": a.seq, "batch": a.batch, "lr": a.lr, "minutes": round(elapsed / 60, 1),
                     "labels": "self-distillation: target softmax at the same position", "data": selfgen_note(a.selfgen)},
        "heldout_top1": round(float(np.mean(accs)), 4),
        "heldout_early_exit_top1": round(float(np.mean(bases)), 4),
        "heldout_greedy_top1": round(float(greedy_acc), 4),
        "heldout_overlap": round(float(np.mean(overlaps)), 4),
        "heldout_by_confidence": by_threshold,
    }
    json.dump(manifest, open(os.path.join(out_dir, "kangaroo.json"), "w"), indent=2)
    print(f"[kangaroo] held-out top-1 {manifest['heldout_top1']} (plain early exit {manifest['heldout_early_exit_top1']}), on greedy continuations {manifest['heldout_greedy_top1']}, "
          f"overlap {manifest['heldout_overlap']}; by confidence {json.dumps(by_threshold)}", flush=True)
    print("[kangaroo] next: write_graphs.py MODEL_DIR --kangaroo-only writes the split graphs (deep*.onnx, draft*.onnx) the engine runs", flush=True)


if __name__ == "__main__":
    main()
