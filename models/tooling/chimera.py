"""Chimera drafter (docs/methods.md §4), trained by self-distillation on the frozen target and exported to
ONNX with a manifest.

usage: /usr/bin/python3 models/tooling/chimera.py WORK_DIR MODEL_DIR [--steps 240] [--depths 4]
       [--seq 256] [--batch 8] [--selfgen 256] [--ffn N] [--draft-vocab N] [--threads N]

The target is MODEL_DIR's (target.py); WORK_DIR holds the token splits, checkpoint and log (heads.py).

Architecture (dims follow the target's config; specserve-tiny: d = 256, 4 query heads, 2 KV heads):
  trigram encoder   c_q = Linear(3h -> h)(ResBlock(3h)(concat(E x_{q-2}, E x_{q-1}, E x_q)))
                    over the target's frozen embedding E (positions < 0 repeat token 0 of the
                    sequence); ResBlock's W zero-initialised, the reduction starts as "E x_q".
  full-context layer one pre-norm Llama decoder layer (the target's query heads, KV heads, head_dim
                    and RoPE frequencies, from explicit positions; SwiGLU MLP --ffn wide, by default
                    the target's intermediate size; specserve-tiny's build: 512) plus a final RMSNorm. Its keys/values are the
                    projections of the target's own post-final-norm hidden states h_j of every
                    committed row j (cached per sequence at run time), of the drafter's outputs for
                    the draft-path rows, and of the query row's trigram code.
  residual heads    one per depth: logits = W · (A_k h_last + B_k z) (W: the target's LM head, E when
                    tied), h_last = the target's hidden
                    state at the root's parent, z = the layer's output; A_k = B_k = I at start.
                    This is Chimera's Linear(2h -> V) initialised [W_lm | W_lm] factored through
                    the frozen tied LM head: E·(A h + B z) = [E A | E B]·[h; z], so the start
                    point is the same ([E | E]) while the trained part is 2h² per head instead of
                    2hV (0.13 M vs 2.1 M parameters) and one step projects onto the vocabulary
                    once (h·V) instead of twice (2h·V) -- the LM-head projection is most of a
                    draft step's cost at this size.

Multi-step drafting (the training-time unroll matches run time exactly): with the root at position L
(committed rows 0..L-1 have target states), depth k's query is the path node at position
q = L + k - 1; it attends over h_0..h_{L-1}, the layer outputs z of the path nodes at positions
L..q-1 (they stand in for the target states not computed yet) and its own trigram code, and
predicts the token at q + 1. Training unrolls depths 1..K on every position of a window in
parallel; labels are the target's own softmax at row q (self-distillation, soft cross-entropy), loss
weights 0.8^(k-1). Windows are half corpus text, half "prompt + the target's own greedy output"
(96 corpus tokens, then 160 greedy tokens generated once and kept in WORK_DIR), the text the
drafter sees at run time.

Exports (MODEL_DIR/chimera/; all weights as external data, see share_initializers):
  chimera_project.onnx   hidden [n, D], positions [n] int64 -> keys, values [n, KV, hd]
                         (the full-context layer's K/V of committed target rows, RoPE applied)
  chimera_draft{K}.onnx  K = 1..draft-depths: absorbs the new committed rows and drafts K depths along
                         the greedy path in one call (one onnxruntime call per proposal: at this
                         model size a call's fixed cost is a real share of a target step)
  chimera.bin            the drafter's weights, each stored once for all graphs
  embed.f32              (not written here) the LM head = heads/embed.f32, written by heads.py
  chimera.json           manifest: dims, files with sha256, held-out accuracy, training
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import NEG, RMSNorm, rope_frequencies, rotate_half  # noqa: E402
from heads import (DraftLMHead, ResBlock, device_of, distill, draft_vocab, draft_vocab_record, drafter_args, drafter_setup,  # noqa: E402
                   EMBED_FILE, heldout_continuations, heldout_windows, lm_head_note, mean_over_batches, mixed_batch, selfgen_note, selfgen_sequences)
from graph import retie_lm_head  # noqa: E402
from write_graphs import sha256  # noqa: E402
from loop import train_resumable  # noqa: E402
from quantize import DESCRIPTION as QUANT_DESCRIPTION, quantize_model  # noqa: E402

TOPK = 10


class Chimera(nn.Module):
    def __init__(self, cfg, depths, ffn):
        super().__init__()
        D = cfg.d_model
        self.D, self.H, self.KV, self.hd, self.depths = D, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, depths
        self.g = self.H // self.KV
        # trigram encoder
        self.tri_res = ResBlock(3 * D)
        self.tri_out = nn.Linear(3 * D, D, bias=False)
        # full-context decoder layer
        self.norm1 = RMSNorm(D, cfg.norm_eps)
        self.wq = nn.Linear(D, self.H * self.hd, bias=False)
        self.wk = nn.Linear(D, self.KV * self.hd, bias=False)
        self.wv = nn.Linear(D, self.KV * self.hd, bias=False)
        self.wo = nn.Linear(self.H * self.hd, D, bias=False)
        self.norm2 = RMSNorm(D, cfg.norm_eps)
        self.w1 = nn.Linear(D, ffn, bias=False)
        self.w3 = nn.Linear(D, ffn, bias=False)
        self.w2 = nn.Linear(ffn, D, bias=False)
        self.normf = RMSNorm(D, cfg.norm_eps)
        # residual heads [K, D, 2D]: u = A h_last + B z
        self.heads = nn.Parameter(torch.cat([torch.eye(D), torch.eye(D)], dim=1).repeat(depths, 1, 1))
        for m in (self.wq, self.wk, self.wv, self.w1, self.w3):
            nn.init.normal_(m.weight, std=0.02)
        for m in (self.wo, self.w2):
            nn.init.normal_(m.weight, std=0.02 / math.sqrt(2))
        with torch.no_grad():
            self.tri_out.weight.zero_()
            self.tri_out.weight[:, 2 * D:] = torch.eye(D)
        # the target's RoPE frequencies: the hidden states it attends over carry the target's positions
        self.register_buffer("inv_freq", rope_frequencies(cfg), persistent=False)

    # -- pieces shared by training and export --------------------------------------------------
    def rope(self, pos):                            # pos [...] -> cos/sin [..., 1, hd]
        f = pos.unsqueeze(-1).float() * self.inv_freq
        e = torch.cat([f, f], dim=-1).unsqueeze(-2)
        return e.cos(), e.sin()

    def trigram(self, E, t3):                       # t3 [..., 3] token ids -> [..., D]
        x = F.embedding(t3, E)                      # [..., 3, D]
        x = x.reshape(*x.shape[:-2], 3 * self.D)
        return self.tri_out(self.tri_res(x))

    def project(self, x, pos):                      # x [..., D], pos [...] -> k, v [..., KV, hd]
        n = self.norm1(x)
        k = self.wk(n).view(*x.shape[:-1], self.KV, self.hd)
        v = self.wv(n).view(*x.shape[:-1], self.KV, self.hd)
        cos, sin = self.rope(pos)
        return k * cos + rotate_half(k) * sin, v

    def query(self, c, pos):                        # c [..., D] -> q [..., H, hd] (scaled)
        q = self.wq(self.norm1(c)).view(*c.shape[:-1], self.H, self.hd)
        cos, sin = self.rope(pos)
        return (q * cos + rotate_half(q) * sin) * (1.0 / math.sqrt(self.hd))

    def finish(self, c, y):                         # c [..., D], y [..., H*hd] attention mix -> z
        x = c + self.wo(y)
        n = self.norm2(x)
        x = x + self.w2(F.silu(self.w1(n)) * self.w3(n))
        return self.normf(x)

    def head_input(self, k, h_last, z):             # k: 0-based depth (int or 0-d tensor)
        A = self.heads[k]
        return F.linear(torch.cat([h_last, z], dim=-1), A)

    # -- training: every position of a window is a query, depths unrolled ---------------------
    def unroll(self, E, ids, h):
        """ids [B, T], h [B, T, D] target post-norm states -> list over depths k = 1..K of
        (z [B, T, D], u [B, T, D] head input) for the query at position q (rows q < k invalid)."""
        B, T = ids.shape
        KV, g, hd = self.KV, self.g, self.hd
        pos = torch.arange(T, device=ids.device).unsqueeze(0).expand(B, T)
        pad = ids[:, :1].expand(B, 2)
        padded = torch.cat([pad, ids], dim=1)
        t3 = torch.stack([padded[:, 0:T], padded[:, 1:T + 1], padded[:, 2:T + 2]], dim=-1)
        c = self.trigram(E, t3)                                      # [B, T, D]
        q = self.query(c, pos)                                       # [B, T, H, hd]
        qg = q.view(B, T, KV, g, hd).permute(0, 2, 3, 1, 4)          # [B, KV, g, T, hd]
        kh, vh = self.project(h, pos)                                # [B, T, KV, hd]
        kc, vc = self.project(c, pos)
        s_ctx = torch.matmul(qg, kh.permute(0, 2, 3, 1).unsqueeze(2))  # [B, KV, g, T(q), T(j)]
        qi = torch.arange(T, device=ids.device).view(T, 1)
        ji = torch.arange(T, device=ids.device).view(1, T)

        def diag(k_al):                                              # aligned keys [B, T, KV, hd]
            return (qg * k_al.permute(0, 2, 1, 3).unsqueeze(2)).sum(-1)   # [B, KV, g, T]

        def shift(x, o):                                             # row q gets x[q - o]
            return torch.cat([torch.zeros_like(x[:, :o]), x[:, :T - o]], dim=1)

        zs, zkv, out = [], [], []
        for k in range(1, self.depths + 1):
            bias = torch.where(ji <= qi - k, 0.0, NEG)               # context rows j < q - k + 1
            extra_k, extra_v = [kc], [vc]                            # self row
            for o in range(1, k):                                    # path row at q - o: z^{k-o}
                zk, zv = zkv[k - o - 1]
                extra_k.append(shift(zk, o))
                extra_v.append(shift(zv, o))
            s_extra = torch.stack([diag(x) for x in extra_k], dim=-1)  # [B, KV, g, T, e]
            p = torch.softmax(torch.cat([s_ctx + bias, s_extra], dim=-1), dim=-1)
            y = torch.matmul(p[..., :T], vh.permute(0, 2, 1, 3).unsqueeze(2))   # [B, KV, g, T, hd]
            for i, v in enumerate(extra_v):
                y = y + p[..., T + i:T + i + 1] * v.permute(0, 2, 1, 3).unsqueeze(2)
            y = y.permute(0, 3, 1, 2, 4).reshape(B, T, KV * g * hd)
            z = self.finish(c, y)
            zs.append(z)
            zkv.append(self.project(z, pos))
            h_last = shift(h, k)                                     # h at q - k (root's parent)
            out.append((z, self.head_input(k - 1, h_last, z)))
        return out


def depth_losses(model, target, x, first=1, with_loss=True):
    """Per-depth soft-CE loss (None when not with_loss) and top-1 / top-5 agreement with the
    target's argmax, over queries whose root is at position >= first."""
    with torch.no_grad():
        logits, h, _, _ = target(x)
        p = F.softmax(logits, dim=-1) if with_loss else logits
    E, W = target.embed.weight, target.lm_weight                     # trigram encoder's / LM head's
    losses, acc1, acc5 = [], [], []
    for k, (z, u) in enumerate(model.unroll(E, x, h), start=1):
        q0 = first + k - 1                                           # root q - k + 1 >= first
        lg = F.linear(u[:, q0:], W)
        teacher = p[:, q0:]
        loss, a1, a5 = distill(lg, teacher, with_loss)
        losses.append(loss)
        acc1.append(a1)
        acc5.append(a5)
    return losses, acc1, acc5


# -- export ------------------------------------------------------------------------------------
class ProjectExport(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, hidden, positions):           # [n, D], [n]
        return self.m.project(hidden, positions)


class DraftExport(nn.Module):
    """One call drafts K depths for S sequences: absorbs the sequences' new committed rows into the
    context (returning their K/V for the caller's cache), then runs the full-context layer K times
    along the greedy path (the top-1 token of depth d is the path token of depth d + 1), returning
    every depth's top-10. The run time builds the tree from the path and its siblings.

    Same arithmetic as Chimera.unroll, written for a small graph: at this size a draft call's cost
    is mostly per-node overhead, so shapes are static where they can be (-1 for the batch), RoPE's
    rotate-half is one matmul with a constant, and cos/sin are computed once per depth."""

    def __init__(self, m, E, W, K, vocab):
        super().__init__()
        self.m, self.K = m, K
        self.W = nn.Parameter(E.clone(), requires_grad=False)
        # draft vocabulary (EAGLE-3's reduced draft vocab): the LM head is most of a depth's weight
        # traffic, and the target's greedy output stays within the most frequent tokens
        self.lm = DraftLMHead(W, vocab)
        inv = m.inv_freq
        self.register_buffer("inv2", torch.cat([inv, inv]), persistent=False)
        half = m.hd // 2
        rot = torch.zeros(m.hd, m.hd)                                # x @ rot == rotate_half(x)
        rot[torch.arange(half) + half, torch.arange(half)] = -1.0
        rot[torch.arange(half), torch.arange(half) + half] = 1.0
        self.register_buffer("rot", rot, persistent=False)

    def cos_sin(self, pos):                                          # pos [...] -> [..., 1, hd]
        e = (pos.unsqueeze(-1).float() * self.inv2).unsqueeze(-2)
        return e.cos(), e.sin()

    def rope(self, x, cs):
        return x * cs[0] + torch.matmul(x, self.rot) * cs[1]

    def kv_row(self, x, cs):                                         # [S, D] -> [S, 1, KV, hd] x2
        m = self.m
        n = m.norm1(x)
        k = self.rope(m.wk(n).view(-1, m.KV, m.hd), cs)
        return k.unsqueeze(1), m.wv(n).view(-1, 1, m.KV, m.hd)

    def forward(self, ctx_keys, ctx_values, ctx_bias, new_hidden, new_positions, new_bias, hidden_last,
                trigram_ids, positions, forced=None):
        m = self.m
        KV, g, hd, D = m.KV, m.g, m.hd, m.D
        S = new_hidden.shape[0]
        n = m.norm1(new_hidden)                                      # the new rows' K/V
        nk = self.rope(m.wk(n).view(S, -1, KV, hd), self.cos_sin(new_positions))
        nv = m.wv(n).view(S, -1, KV, hd)
        keys_t = torch.cat([ctx_keys, nk], dim=1).permute(0, 2, 3, 1)     # [S, KV, hd, C']
        values = torch.cat([ctx_values, nv], dim=1).permute(0, 2, 1, 3)   # [S, KV, C', hd]
        bias = torch.cat([ctx_bias, new_bias], dim=1).unsqueeze(1).unsqueeze(1)   # [S, 1, 1, C']
        C = keys_t.shape[3]
        t2, t1, t0 = trigram_ids[:, 0:1], trigram_ids[:, 1:2], trigram_ids[:, 2:3]
        pk = pv = None                                               # path rows [S, e, KV, hd]
        heads = [m.heads[min(d, m.depths - 1)] for d in range(self.K)]
        hl = [torch.matmul(hidden_last, h[:, :D].t()) for h in heads[:m.depths]]   # A_d h_last, once
        ids, lps = [], []
        for d in range(self.K):
            cs = self.cos_sin(positions + d)                         # [S, 1, hd]
            emb = F.embedding(torch.cat([t2, t1, t0], dim=1), self.W).view(-1, 3 * D)
            c = m.tri_out(m.tri_res(emb))                            # [S, D]
            q = self.rope(m.wq(m.norm1(c)).view(-1, m.H, hd), cs) * (1.0 / math.sqrt(hd))
            kc, vc = self.kv_row(c, cs)                              # the query row itself
            ek = kc if pk is None else torch.cat([pk, kc], dim=1)
            ev = vc if pv is None else torch.cat([pv, vc], dim=1)
            qg = q.view(-1, KV, g, hd)
            s = torch.cat([torch.matmul(qg, keys_t) + bias, torch.matmul(qg, ek.permute(0, 2, 3, 1))], dim=-1)
            p = torch.softmax(s, dim=-1)
            y = torch.matmul(p[..., :C], values) + torch.matmul(p[..., C:], ev.permute(0, 2, 1, 3))   # [S, KV, g, hd]
            z = m.finish(c, y.view(-1, m.H * hd))
            u = hl[min(d, m.depths - 1)] + torch.matmul(z, heads[d][:, D:].t())   # deeper: the last head
            i, v = self.lm(u)                                        # top-10 token ids and log-probs
            ids.append(i)
            lps.append(v)
            if d + 1 < self.K:                                       # z stands in for the target state at this position
                zk, zv = self.kv_row(z, cs)
                pk = zk if pk is None else torch.cat([pk, zk], dim=1)
                pv = zv if pv is None else torch.cat([pv, zv], dim=1)
                t2, t1, t0 = t1, t0, (i[:, :1] if forced is None else forced[:, d:d + 1])
        return torch.stack(ids, dim=1), torch.stack(lps, dim=1), nk, nv


WEIGHTS_FILE = "chimera.bin"


def share_initializers(paths, E, out_dir):
    """Weights become int8 (quantize.py), then every graph's weights go to external data: the
    embedding to embed.f32 (the same bytes as heads/embed.f32), everything else to one
    content-addressed chimera.bin, so the graphs (one per draft depth, and the project graph) share
    each weight once. The run time hands both files to onnxruntime in memory
    (SessionOptions.externalData)."""
    Eb = E.numpy().astype("<f4").tobytes()
    blob, where = bytearray(), {}
    for p in paths:
        mo = onnx.load(p)
        if not any(i.name == "W" for i in mo.graph.initializer):
            mo.graph.initializer.append(onnx.numpy_helper.from_array(E.numpy(), "W"))
        inits = {i.name for i in mo.graph.initializer}
        for node in [n for n in mo.graph.node if n.op_type == "Identity" and n.input[0] in inits]:
            # torch aliases a weight used several times (the LM head, once per depth) through
            # Identity nodes: point the users at the weight itself so retie_lm_head sees them
            for other in mo.graph.node:
                for j, name in enumerate(other.input):
                    if name == node.output[0]:
                        other.input[j] = node.input[0]
            mo.graph.node.remove(node)
        retie_lm_head(mo, "W")
        quantize_model(mo, out_dir)  # int8 weights (quantize.py): a draft call is bound by weight bytes
        onnx.checker.check_model(mo)
        for init in mo.graph.initializer:
            arr = onnx.numpy_helper.to_array(init)
            if arr.nbytes < 1024:
                continue
            b = arr.tobytes()
            if b == Eb:
                loc, off = EMBED_FILE, 0
            else:
                key = hashlib.sha256(b).hexdigest()
                if key not in where:
                    blob.extend(b"\0" * (-len(blob) % 64))
                    where[key] = len(blob)
                    blob.extend(b)
                loc, off = WEIGHTS_FILE, where[key]
            init.ClearField("raw_data")
            init.data_location = onnx.TensorProto.EXTERNAL
            del init.external_data[:]
            for k, v in (("location", loc), ("offset", str(off)), ("length", str(len(b)))):
                e = init.external_data.add()
                e.key, e.value = k, v
        onnx.save(mo, p)
    with open(os.path.join(out_dir, WEIGHTS_FILE), "wb") as f:
        f.write(blob)


def draft_inputs(S, C, N, D, KV, hd):
    return (torch.randn(S, C, KV, hd), torch.randn(S, C, KV, hd), torch.zeros(S, C), torch.randn(S, N, D),
            torch.arange(N).repeat(S, 1) + C, torch.zeros(S, N), torch.randn(S, D),
            torch.zeros(S, 3, dtype=torch.int64), torch.full((S,), C + N, dtype=torch.int64))


def export(model, E, W, out_dir, draft_depths, vocab):
    """E: the target's embedding (trigram encoder), W: its LM head (the same matrix when tied)."""
    D, KV, hd = model.D, model.KV, model.hd
    files = ["chimera_project.onnx"]
    torch.onnx.export(ProjectExport(model), (torch.randn(3, D), torch.arange(3)), os.path.join(out_dir, files[0]),
                      input_names=["hidden", "positions"], output_names=["keys", "values"], opset_version=17,
                      dynamic_axes={"hidden": {0: "n"}, "positions": {0: "n"}, "keys": {0: "n"}, "values": {0: "n"}})
    names = ["ctx_keys", "ctx_values", "ctx_bias", "new_hidden", "new_positions", "new_bias", "hidden_last", "trigram_ids", "positions"]
    dyn = {"ctx_keys": {0: "s", 1: "c"}, "ctx_values": {0: "s", 1: "c"}, "ctx_bias": {0: "s", 1: "c"},
           "new_hidden": {0: "s", 1: "n"}, "new_positions": {0: "s", 1: "n"}, "new_bias": {0: "s", 1: "n"},
           "hidden_last": {0: "s"}, "trigram_ids": {0: "s"}, "positions": {0: "s"},
           "topk_ids": {0: "s"}, "topk_logprobs": {0: "s"}, "new_keys": {0: "s", 1: "n"}, "new_values": {0: "s", 1: "n"}}
    for K in range(1, draft_depths + 1):
        files.append(f"chimera_draft{K}.onnx")
        torch.onnx.export(DraftExport(model, E, W, K, vocab), draft_inputs(2, 5, 3, D, KV, hd), os.path.join(out_dir, files[-1]),
                          input_names=names, output_names=["topk_ids", "topk_logprobs", "new_keys", "new_values"],
                          opset_version=17, dynamic_axes=dyn)
    share_initializers([os.path.join(out_dir, f) for f in files], E, out_dir)
    return files + [WEIGHTS_FILE]


@torch.no_grad()
def check_export_matches_unroll(model, target, valid, K, vocab):
    """The draft module (what is exported) must reproduce the training unroll along one window when
    its path tokens are forced to the window's own, and absorb new rows like the cached ones."""
    T, L, cached = 48, 40, 30                                        # root at position L
    x = torch.from_numpy(valid[:T].astype(np.int64)).unsqueeze(0).to(device_of(target))
    _, h, _, _ = target(x)
    E, W = target.embed.weight, target.lm_weight
    un = model.unroll(E, x, h)
    ck, cv = model.project(h[0, :cached], torch.arange(cached))
    draft = DraftExport(model, E, W, K, vocab)
    ids, lp, nk, _ = draft(ck.unsqueeze(0), cv.unsqueeze(0), torch.zeros(1, cached), h[:, cached:L],
                           torch.arange(cached, L).unsqueeze(0), torch.zeros(1, L - cached), h[:, L - 1],
                           x[:, L - 2:L + 1], torch.tensor([L]), forced=x[:, L + 1:L + K])
    err = (nk[0] - model.project(h[0, cached:L], torch.arange(cached, L))[0]).abs().max().item()
    for k in range(1, K + 1):
        want = F.log_softmax(F.linear(un[k - 1][1][0, L + k - 1], W[vocab]), dim=-1).topk(TOPK)
        err = max(err, (ids[0, k - 1] != vocab[want.indices]).sum().item())
        want = want.values
        err = max(err, (lp[0, k - 1] - want).abs().max().item())
    assert err < 1e-3, f"export module differs from the training unroll by {err}"
    return err


def parser():
    """The command line, with this script's defaults (train_drafters.py reads them too)."""
    ap = drafter_args(argparse.ArgumentParser(), steps=240, seq=256, batch=8, lr=2e-3, seed=4242)
    ap.add_argument("--depths", type=int, default=4)
    ap.add_argument("--draft-depths", type=int, default=5,
                    help="deepest draft graph exported; depths past --depths reuse the last trained head "
                         "(bench prompts, 8 nodes: 4 depths 3.61 tokens/step, 5: 3.84, 6: 3.96, 8: 4.07, "
                         "each depth ~0.1 of a target step: 5 is where goodput flattens)")
    ap.add_argument("--ffn", type=int, default=None, help="the full-context layer's SwiGLU width (default: the target's intermediate size)")
    return ap


def main(argv=None):
    a = parser().parse_args(argv)
    target, cfg, train, valid = drafter_setup(a)
    dev = device_of(target)
    ffn = a.ffn or cfg.ffn_hidden
    gen = selfgen_sequences(a.work, target, train, a.selfgen, 'chimera') if a.selfgen else None
    model = Chimera(cfg, a.depths, ffn).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[chimera] {a.depths} depths, {n_params / 1e6:.3f} M parameters (+ the target's frozen embedding / LM head), "
          f"{a.steps} steps of {a.batch}x{a.seq} tokens on {dev}, {a.threads} thread(s)", flush=True)
    weights = [0.8 ** k for k in range(a.depths)]

    def train_step(step):
        x = mixed_batch(train, gen, step, a.seed, a.batch, a.seq, dev)
        losses, acc1, _ = depth_losses(model, target, x)
        loss = sum(w * l for w, l in zip(weights, losses))
        return loss, {"acc1": [round(v, 3) for v in acc1]}, f"top1 {' '.join(f'{v:.2f}' for v in acc1)}"

    step, elapsed = train_resumable("chimera", model, opt, os.path.join(a.work, "chimera.pt"), os.path.join(a.work, "chimera_log.jsonl"),
                                    a.steps, a.lr, train_step, save_every=25)

    # held-out agreement with the target's greedy token at each depth
    model.eval()
    acc1s, acc5s = np.zeros(a.depths), np.zeros(a.depths)
    n = 0
    with torch.no_grad():
        for x in heldout_windows(valid, a.seq, dev):
            _, a1, a5 = depth_losses(model, target, x, with_loss=False)
            acc1s += np.array(a1)
            acc5s += np.array(a5)
            n += 1
    acc1s, acc5s = acc1s / n, acc5s / n
    print(f"[chimera] held-out top-1 {acc1s.round(3).tolist()} top-5 {acc5s.round(3).tolist()} ({n} windows)", flush=True)
    # the same on the target's own greedy continuations of validation prefixes: with path tokens
    # equal to the target's greedy tokens, top-1 agreement at depth k is the probability that a
    # chain draft's k-th token is accepted given the k-1 before it were
    vgen, prefix = heldout_continuations(a.work, target, valid, a.heldout_prompts)
    with torch.no_grad():
        # score only the generated part: queries whose root is past the prefix
        g1, g5 = mean_over_batches(lambda x: depth_losses(model, target, x, first=prefix, with_loss=False)[1:], vgen)
    print(f"[chimera] held-out greedy-continuation top-1 {g1.round(3).tolist()} top-5 {g5.round(3).tolist()}", flush=True)
    target.cpu()
    model.cpu()
    vocab, vocab_record = draft_vocab(train, cfg.vocab, a.draft_vocab)
    err = check_export_matches_unroll(model, target, valid, a.depths, vocab)
    print(f"[chimera] draft module matches the training unroll (max abs diff {err:.2e})", flush=True)

    out_dir = os.path.join(a.model_dir, "chimera")
    os.makedirs(out_dir, exist_ok=True)
    E, W = target.embed.weight.detach(), target.lm_weight.detach()
    embed_path = os.path.join(a.model_dir, "heads", EMBED_FILE)
    want = E.numpy().astype("<f4").tobytes()
    if not os.path.exists(embed_path) or open(embed_path, "rb").read() != want:
        os.makedirs(os.path.dirname(embed_path), exist_ok=True)
        with open(embed_path, "wb") as f:
            f.write(want)
    files = export(model, E, W, out_dir, a.draft_depths, vocab)
    listed = {f: os.path.join(out_dir, f) for f in files}
    listed["../heads/" + EMBED_FILE] = embed_path
    for f in os.listdir(out_dir):                                    # graphs of an older export
        if f.endswith(".onnx") and f not in files:
            os.remove(os.path.join(out_dir, f))
    manifest = {
        "kind": "chimera",
        "depths": a.depths, "draft_depths": a.draft_depths, "topk": TOPK,
        "draft_vocab": draft_vocab_record(vocab_record, vocab, vgen[:, prefix:].cpu()),
        "hidden": "final (post-final-norm target hidden state of every committed row, and of the root's parent)",
        "hidden_size": cfg.d_model, "kv_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim, "heads": cfg.n_heads,
        "ffn": ffn, "context": cfg.context, "rope_theta": cfg.rope_theta,
        "files": {f: {"bytes": os.path.getsize(p), "sha256": sha256(p)} for f, p in listed.items()},
        "graphs": {
            "project": "chimera_project.onnx: hidden [n, D], positions [n] -> keys, values [n, KV, hd] (the full-context "
                       "layer's K/V of committed target rows, RoPE applied)",
            "draft": "chimera_draft{K}.onnx, K = 1..draft_depths (depths past `depths` reuse the last head): ctx_keys, ctx_values [S, C, KV, hd], ctx_bias [S, C] (0 / -1e9), "
                     "new_hidden [S, N, D], new_positions [S, N], new_bias [S, N], hidden_last [S, D], trigram_ids [S, 3] "
                     "(tokens at root-2, root-1, root), positions [S] (the root's) -> topk_ids, topk_logprobs [S, K, 10] "
                     "(depth d's top-10 below the greedy path of depths < d), new_keys, new_values [S, N, KV, hd]",
            "external_data": "embed.f32 (= heads/embed.f32) and chimera.bin; onnxruntime gets both in memory "
                             "(SessionOptions.externalData), as it refuses files outside the graph's folder",
        },
        "parameters": int(n_params),
        "parameters_detail": {name: int(p.numel()) for name, p in model.named_parameters()},
        "lm_head": lm_head_note(cfg) + ", restricted to the draft vocabulary",
        "weights": QUANT_DESCRIPTION + "; held-out figures are of the fp32 module",
        "training": {"steps": step, "seq": a.seq, "batch": a.batch, "lr": a.lr, "threads": a.threads,
                     "data": selfgen_note(a.selfgen),
                     "minutes": round(elapsed / 60, 1), "loss_weights": [round(w, 3) for w in weights],
                     "labels": "self-distillation: soft CE against the target's softmax at the predicted position"},
        "heldout_top1": [round(float(v), 4) for v in acc1s], "heldout_top5": [round(float(v), 4) for v in acc5s],
        "heldout_note": "agreement with the target's greedy token at depth k (token root+k) along held-out text, "
                        "path tokens = the text's own tokens",
        "heldout_greedy_top1": [round(float(v), 4) for v in g1], "heldout_greedy_top5": [round(float(v), 4) for v in g5],
        "heldout_greedy_note": f"same on the target's greedy continuations ({vgen.shape[1] - prefix} tokens) of {vgen.shape[0]} "
                               f"validation prefixes ({prefix} tokens), roots in the continuation: depth-k top-1 = P(k-th chain "
                               "draft accepted | the previous were)",
    }
    json.dump(manifest, open(os.path.join(out_dir, "chimera.json"), "w"), indent=2)
    print(f"[chimera] exported {files} to {out_dir}", flush=True)


if __name__ == "__main__":
    main()
