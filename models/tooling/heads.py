"""Step 5 of the build: Medusa and Hydra draft heads, trained by self-distillation on the frozen
target, exported to ONNX with a manifest.

usage: /usr/bin/python3 models/tooling/heads.py WORK_DIR MODEL_DIR --kind medusa|hydra [--heads 4]
       [--steps N] [--seq 256] [--batch 16] [--draft-vocab N] [--selfgen 256] [--threads N]

The target is MODEL_DIR's own (target.py: the weights the server runs, any Llama-family shape);
WORK_DIR holds the token splits (train/valid .u16, or .u32 past 65,536 tokens), the checkpoints and
the logs. This module also holds what the other drafter scripts share (arguments, the target and
data, self-generated sequences, distillation losses, the draft vocabulary, the embedding file).

Self-distillation: inputs are corpus windows; the label of a head predicting the token at t+s is the
target's own softmax at position t+s-1 (its distribution for that token under teacher forcing), so
the heads learn what the target would say, not what the corpus says.

Medusa (docs/methods.md §1): head k = ResBlock(h) -> LM head, predicts t+k+2 from the post-norm hidden
  state h_t alone. ResBlock: x + SiLU(W x + b), W zero-initialised.
Hydra (docs/methods.md §2): head i sees concat(h_t, E(x_{t+1}), ..., E(x_{t+i+1})) (E = the target's frozen
  embedding; x_{t+1} is the root) -> res(x) + SiLU(W x) with W zero-initialised and res a learned
  reduction -> one more ResBlock -> LM head; predicts t+i+2.
Both reuse the target's frozen LM head (specserve-tiny's is the embedding matrix, tied): at this
model size a per-head vocabulary projection would be most of the drafter's parameters and of its
per-step cost.

The exported graphs project onto a draft vocabulary (the most frequent training tokens, see
draft_vocab; log-probabilities are over it, ids are mapped back to token ids) and carry int8 weights
(quantize.py): a draft call here is bound by the bytes of weights it reads, so this makes the heads
about 2x cheaper in the decode loop without a measurable change in acceptance length (a draft
token outside the draft vocabulary is never proposed; losslessness is the verifier's, unaffected).

Exports (next to the model, in MODEL_DIR/heads/):
  medusa.onnx        hidden [N, D] -> topk_ids [N, K, k] int64, topk_logprobs [N, K, k]
  hydra_head{i}.onnx hidden [N, D], path_ids [N, i+1] int64 (the root and the i tokens below it)
                     -> topk_ids [N, k], topk_logprobs [N, k]   (one head per call; depth by depth)
  embed.f32          the target's embedding, external data of the Hydra graphs (path embeddings)
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from graph import retie_lm_head  # noqa: E402
from loop import train_resumable  # noqa: E402
from quantize import DESCRIPTION as QUANT_DESCRIPTION, quantize_graph  # noqa: E402
from target import load as load_target, pick_device, read_tokens, token_suffix  # noqa: E402
from train import batch_at  # noqa: E402

TOPK = 10
SELFGEN_SEED = 4242  # one set of self-generated sequences per work folder, shared by every drafter
SELFGEN_PREFIX, SELFGEN_NEW = 96, 160   # tokens of corpus prompt and of the target's greedy continuation
HELDOUT_SEQUENCES = 32  # held-out prompts whose greedy continuations the agreement figures are taken on
HELDOUT_WINDOWS = 40    # held-out text windows, for the agreement along the text itself
MIN_HELDOUT = 64        # tokens: the shortest held-out split those are taken on (chimera.py checks 48)
EVAL_BATCH = 4          # sequences per evaluation call: its logits are [batch, seq, vocab] (32 x 256 x 128k: 4 GB)
DRAFT_VOCAB_COVERAGE = 0.995  # the default draft vocabulary covers this share of the training tokens,
DRAFT_VOCAB_MULTIPLE = 64     # rounded up to a multiple of this (matrix shapes)
TOKEN_TYPES = {"u16": np.uint16, "u32": np.uint32}


class ResBlock(nn.Module):
    def __init__(self, d_in, d_out=None):
        super().__init__()
        d_out = d_out or d_in
        self.w = nn.Linear(d_in, d_out)
        nn.init.zeros_(self.w.weight)
        nn.init.zeros_(self.w.bias)
        self.res = nn.Identity() if d_in == d_out else nn.Linear(d_in, d_out, bias=False)

    def forward(self, x):
        return self.res(x) + F.silu(self.w(x))


class MedusaHeads(nn.Module):
    def __init__(self, d, n_heads):
        super().__init__()
        self.blocks = nn.ModuleList([ResBlock(d) for _ in range(n_heads)])

    def forward(self, h):                          # h [..., D] -> [..., K, D]
        return torch.stack([b(h) for b in self.blocks], dim=-2)


class HydraHeads(nn.Module):
    def __init__(self, d, n_heads):
        super().__init__()
        self.first = nn.ModuleList([ResBlock((i + 2) * d, d) for i in range(n_heads)])
        self.second = nn.ModuleList([ResBlock(d) for _ in range(n_heads)])
        for blk in self.first:  # start as "the hidden state" so training begins at Medusa's point
            with torch.no_grad():
                blk.res.weight.zero_()
                blk.res.weight[:, :d] = torch.eye(d)

    def head(self, i, h, path_emb):                # h [..., D], path_emb [..., i+1, D]
        x = torch.cat([h] + [path_emb[..., j, :] for j in range(i + 1)], dim=-1)
        return self.second[i](self.first[i](x))


def drafter_args(ap, steps, seq, batch, lr, seed):
    """Adds what every drafter training script takes: the work folder (the token splits,
    checkpoints, logs), the model folder whose target it distils and that it exports into, and the
    schedule with this script's defaults. Returns `ap`."""
    ap.add_argument("work")
    ap.add_argument("model_dir")
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--seq", type=int, default=seq)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--seed", type=int, default=seed)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads (default: every core)")
    ap.add_argument("--draft-vocab", type=int, default=None,
                    help="draft vocabulary of the exported graphs: the N most frequent training tokens (default: derived "
                         f"from the text, see draft_vocab: {DRAFT_VOCAB_COVERAGE:.1%} coverage)")
    ap.add_argument("--selfgen", type=int, default=256,
                    help=f"self-generated sequences ({SELFGEN_PREFIX}-token corpus prefix + {SELFGEN_NEW} greedy target tokens) "
                         "making up half of every batch; 0 = corpus windows only")
    ap.add_argument("--heldout-prompts", type=int, default=HELDOUT_SEQUENCES,
                    help="held-out prompts whose greedy continuations the agreement figures are taken on")
    return ap


def drafter_setup(a):
    """Threads and seed from the parsed arguments, then the frozen target (on CUDA when torch sees
    a GPU) and the token splits: (target, cfg, train, valid)."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    target, cfg = load_target(a.model_dir, pick_device())
    train, valid = read_tokens(a.work, "train"), read_tokens(a.work, "valid")
    for name, data in (("train", train), ("valid", valid)):
        if data.size and int(data.max()) >= cfg.vocab:
            sys.exit(f"{name} tokens in {a.work} go up to {int(data.max())}, past the model's vocabulary of {cfg.vocab}")
    need = max(a.seq, SELFGEN_PREFIX) + 2
    if train.size < need:
        sys.exit(f"{a.work}: {train.size} training tokens; --seq {a.seq} needs at least {need}")
    if valid.size < MIN_HELDOUT:
        sys.exit(f"{a.work}: {valid.size} held-out tokens; at least {MIN_HELDOUT} are needed")
    if a.selfgen and a.seq > SELFGEN_PREFIX + SELFGEN_NEW:
        sys.exit(f"--seq {a.seq} is longer than the self-generated sequences ({SELFGEN_PREFIX + SELFGEN_NEW} tokens): "
                 "use a shorter --seq or --selfgen 0")
    return target, cfg, train, valid


def device_of(module):
    return next(module.parameters()).device


def lm_head_note(cfg):
    """How the manifests describe the LM head the drafters project onto."""
    return "tied to the target embedding (frozen)" if cfg.tied else "the target's own LM head (lm_head.weight, frozen)"


def mean_over_batches(fn, x, batch=EVAL_BATCH):
    """The mean of fn(rows) (numbers or arrays of them) over row batches of x, weighted by rows."""
    total = sum(np.asarray(fn(x[i:i + batch]), dtype=np.float64) * len(x[i:i + batch]) for i in range(0, len(x), batch))
    return total / len(x)


def heldout_windows(valid, seq, device, n=HELDOUT_WINDOWS):
    """Up to n consecutive held-out windows of `seq` tokens ([1, seq] int64; one shorter window
    when the split is shorter than that)."""
    L = min(seq, valid.size)
    for i in range(0, max(1, min(valid.size - L, n * L)), L):
        yield torch.from_numpy(valid[i:i + L].astype(np.int64)).unsqueeze(0).to(device)


@torch.no_grad()
def greedy_continuations(target, data, n, prefix, new, seed, batch=64):
    """n sequences: a random `prefix`-token corpus window followed by the target's own greedy
    continuation of `new` tokens (what the drafter sees at run time: a prompt, then the target's
    output). Returns [n, prefix + new], uint16 or uint32 as the vocabulary needs."""
    rng = np.random.default_rng([seed, 7])
    starts = rng.integers(0, max(1, data.size - prefix - 1), size=n)
    out = np.zeros((n, prefix + new), dtype=TOKEN_TYPES[token_suffix(target.c.vocab)])
    dev = device_of(target)
    for b in range(0, n, batch):
        x = torch.from_numpy(np.stack([data[s:s + prefix] for s in starts[b:b + batch]]).astype(np.int64)).to(dev)
        B = x.shape[0]
        logits, _, _, new_kv = target(x, last_only=True)
        past = [(k.transpose(1, 2), v.transpose(1, 2)) for k, v in new_kv]  # head-major past
        toks = [x]
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        for t in range(new):
            toks.append(nxt)
            if t == new - 1:
                break
            P = prefix + t
            logits, _, _, kv = target(nxt, torch.full((B, 1), P, device=dev), torch.zeros(1, 1, 1, P + 1, device=dev), past)
            past = [(torch.cat([pk, k.transpose(1, 2)], 2), torch.cat([pv, v.transpose(1, 2)], 2))
                    for (pk, pv), (k, v) in zip(past, kv)]
            nxt = logits[:, -1].argmax(-1, keepdim=True)
        out[b:b + B] = torch.cat(toks, 1).cpu().numpy()
    return out


def heldout_continuations(work, target, valid, n=HELDOUT_SEQUENCES):
    """n held-out prompts (up to SELFGEN_PREFIX tokens: fewer when the split is short) with the
    target's greedy continuations, [n, prefix + SELFGEN_NEW] int64 on the target's device, and the
    prefix length: the agreement on text like decoding sees. Cached in `work` like the
    self-generated training sequences: every drafter is scored on the same ones."""
    prefix = min(SELFGEN_PREFIX, valid.size - 2)
    gen = _cached(work, f"heldout_{n}", target.c.vocab, prefix + SELFGEN_NEW,
                  lambda: greedy_continuations(target, valid, n, prefix, SELFGEN_NEW, SELFGEN_SEED + 1))
    return torch.from_numpy(gen.astype(np.int64)).to(device_of(target)), prefix


def mixed_batch(train, gen, step, seed, batch, seq, device="cpu"):
    """Half corpus windows, half self-generated sequences (prompt + the target's greedy output)."""
    n_gen = batch // 2 if gen is not None else 0
    x, _ = batch_at(train, step, seed, batch - n_gen, seq)
    if n_gen:
        rng = np.random.default_rng([seed, step, 1])
        g = torch.from_numpy(gen[rng.integers(0, gen.shape[0], size=n_gen), :seq].astype(np.int64))
        x = torch.cat([x, g], dim=0)
    return x.to(device)


def selfgen_sequences(work, target, train, n, tag):
    """The n self-generated sequences (SELFGEN_PREFIX-token corpus prefix + SELFGEN_NEW greedy
    target tokens) of this work folder, generated once and cached as selfgen_{n}.u16 (.u32 past
    65,536 tokens)."""
    t0 = time.time()
    gen = _cached(work, f"selfgen_{n}", target.c.vocab, SELFGEN_PREFIX + SELFGEN_NEW,
                  lambda: greedy_continuations(target, train, n, SELFGEN_PREFIX, SELFGEN_NEW, SELFGEN_SEED))
    if time.time() - t0 > 1:
        print(f"[{tag}] generated {n} greedy continuations in {time.time() - t0:.0f} s", flush=True)
    return gen


def _cached(work, stem, vocab, width, make):
    """Token rows [n, width] from WORK/{stem}.u16 (.u32 past 65,536 tokens), made by `make()` and
    written there the first time."""
    sfx = token_suffix(vocab)
    path = os.path.join(work, f"{stem}.{sfx}")
    if os.path.exists(path):
        return np.fromfile(path, dtype=TOKEN_TYPES[sfx]).reshape(-1, width)
    rows = make()
    rows.tofile(path + ".tmp")
    os.replace(path + ".tmp", path)
    return rows


def selfgen_note(selfgen):
    """The manifests' training-data line."""
    if not selfgen:
        return "corpus windows"
    return (f"half corpus windows, half {selfgen} self-generated sequences ({SELFGEN_PREFIX}-token corpus prefix + "
            f"{SELFGEN_NEW} greedy target tokens)")


def soft_ce(logits, teacher_p):
    return -(teacher_p * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def distill(logits, teacher, with_loss=True):
    """Soft cross-entropy against the teacher's probabilities (None when not with_loss: then
    `teacher` may be its logits), and top-1 / top-5 agreement with its argmax."""
    with torch.no_grad():
        want = teacher.argmax(-1)
        top = logits.topk(5, dim=-1).indices
        acc1 = (top[..., 0] == want).float().mean().item()
        acc5 = (top == want.unsqueeze(-1)).any(-1).float().mean().item()
    return soft_ce(logits, teacher) if with_loss else None, acc1, acc5


def head_losses(kind, heads, target, x, n_heads, start=0, with_loss=True):
    """Per-head loss (None when not with_loss: evaluation skips the softmaxes, [B, T, V] each) and
    top-1/top-5 agreement with the target's argmax, over the positions from `start` on (the
    context before them still counts)."""
    with torch.no_grad():
        logits, h, _, _ = target(x)
        p = F.softmax(logits, dim=-1) if with_loss else logits   # [B, T, V]
        emb = target.embed(x)                      # [B, T, D]
    B, T, D = h.shape
    W = target.lm_weight
    losses, acc1, acc5 = [], [], []
    for k in range(n_heads):
        s = k + 2                                  # head k predicts t+s
        n = T - s + 1                              # positions t = 0 .. T-s, teacher at t+s-1
        if n <= 0:
            break
        if kind == "medusa":
            z = heads.blocks[k](h[:, :n])
        else:
            # path tokens x_{t+1} .. x_{t+k+1} (root first)
            path = torch.stack([emb[:, 1 + j:1 + j + n] for j in range(k + 1)], dim=-2)
            z = heads.head(k, h[:, :n], path)
        lg = F.linear(z[:, start:], W)             # the target's frozen LM head
        teacher = p[:, s - 1 + start:s - 1 + n]
        loss, a1, a5 = distill(lg, teacher, with_loss)
        losses.append(loss)
        acc1.append(a1)
        acc5.append(a5)
    return losses, acc1, acc5


def draft_vocab(train, vocab, size=None):
    """The draft vocabulary the exported drafters project onto (EAGLE-3's reduced draft vocab): the
    `size` most frequent training tokens, ascending ids. The LM head is most of a draft call's
    weight bytes (specserve-tiny: 2,048 of 4,096 tokens cover 99.3% of the target's greedy output).
    size None: the fewest tokens covering DRAFT_VOCAB_COVERAGE of the training tokens, rounded up
    to a multiple of DRAFT_VOCAB_MULTIPLE (matrix shapes), never more than the vocabulary.
    Returns (ids LongTensor, the record the manifests keep of it)."""
    cnt = np.bincount(train, minlength=vocab)
    order = np.argsort(-cnt, kind="stable")
    covered = np.cumsum(cnt[order]) / max(1, train.size)
    if size is None:
        need = int(np.searchsorted(covered, DRAFT_VOCAB_COVERAGE)) + 1
        size = min(vocab, -(-need // DRAFT_VOCAB_MULTIPLE) * DRAFT_VOCAB_MULTIPLE)
        chosen = (f"default: the {need} most frequent training tokens cover {DRAFT_VOCAB_COVERAGE:.1%} of the training "
                  f"tokens, rounded up to a multiple of {DRAFT_VOCAB_MULTIPLE} (at most the vocabulary)")
    elif not 1 <= size <= vocab:
        sys.exit(f"--draft-vocab {size}: expected 1 .. {vocab} (the model's vocabulary)")
    else:
        chosen = f"--draft-vocab {size}"
    ids = torch.from_numpy(np.sort(order[:size])).long()
    record = {"size": int(size), "tokens": "the most frequent training tokens", "chosen": chosen,
              "train_coverage": round(float(covered[size - 1]), 4)}
    return ids, record


def draft_vocab_record(record, ids, generated):
    """The manifest's draft_vocab entry: `record` plus the share of the target's held-out greedy
    tokens (`generated`, any int array) inside the draft vocabulary."""
    return {**record, "heldout_greedy_coverage": round(float(np.isin(np.asarray(generated), ids.numpy()).mean()), 4)}


class DraftLMHead(nn.Module):
    """log-softmax over the draft vocabulary, top-k (default TOPK), mapped back to token ids."""

    def __init__(self, W, vocab, k=TOPK):
        super().__init__()
        self.k = k
        self.Wd = nn.Parameter(W[vocab].clone(), requires_grad=False)
        self.register_buffer("vocab", vocab.clone().unsqueeze(-1), persistent=False)

    def forward(self, z):                          # [..., D] -> ids, logprobs [..., k]
        v, i = torch.topk(F.log_softmax(F.linear(z, self.Wd), dim=-1), self.k, dim=-1)
        return F.embedding(i, self.vocab).squeeze(-1), v


class MedusaExport(nn.Module):
    def __init__(self, heads, W, vocab):
        super().__init__()
        self.heads = heads
        self.lm = DraftLMHead(W, vocab)

    def forward(self, hidden):                     # [N, D]
        z = self.heads(hidden)                     # [N, K, D]
        N, K, D = z.shape
        i, v = self.lm(z.reshape(N * K, D))
        return i.view(N, K, TOPK), v.view(N, K, TOPK)


class HydraHeadExport(nn.Module):
    """One graph per head index (exported separately: the input width depends on the head)."""

    def __init__(self, heads, i, E, W, vocab):
        super().__init__()
        self.heads, self.i = heads, i
        self.W = nn.Parameter(E.clone(), requires_grad=False)
        self.lm = DraftLMHead(W, vocab)

    def forward(self, hidden, path_ids):           # [N, D], [N, i+1]
        emb = F.embedding(path_ids, self.W)        # [N, i+1, D]: the full embedding, shared as embed.f32
        return self.lm(self.heads.head(self.i, hidden, emb))


EMBED_FILE = "embed.f32"


def share_embedding(path, W, name="W"):
    """Re-tie the LM head to the embedding (initializer `name`) and store the embedding once, as
    external data in EMBED_FILE next to the graph, shared by every graph of the folder (otherwise
    each file carries its own 4 MB copy)."""
    mo = onnx.load(path)
    if not any(i.name == name for i in mo.graph.initializer):  # only its folded transpose was kept
        mo.graph.initializer.append(onnx.numpy_helper.from_array(W.numpy(), name))
    retie_lm_head(mo, name)
    for init in mo.graph.initializer:
        if init.name == name:
            init.ClearField("raw_data")
            init.data_location = onnx.TensorProto.EXTERNAL
            del init.external_data[:]
            for k, v in (("location", EMBED_FILE), ("offset", "0"), ("length", str(W.numel() * 4))):
                e = init.external_data.add()
                e.key, e.value = k, v
    onnx.save(mo, path)
    W.numpy().astype("<f4").tofile(os.path.join(os.path.dirname(path), EMBED_FILE))
    onnx.checker.check_model(path)


def export_medusa(heads, W, vocab, path):
    """W: the LM head [V, D]."""
    D = W.shape[1]
    torch.onnx.export(MedusaExport(heads, W, vocab), (torch.randn(2, D),), path, input_names=["hidden"],
                      output_names=["topk_ids", "topk_logprobs"], opset_version=17,
                      dynamic_axes={"hidden": {0: "n"}, "topk_ids": {0: "n"}, "topk_logprobs": {0: "n"}})
    quantize_graph(path)


def export_hydra(heads, E, W, vocab, n_heads, out_dir):
    """E: the embedding (path tokens), W: the LM head, both [V, D] (the same matrix when tied)."""
    D = W.shape[1]
    files = []
    for i in range(n_heads):
        path = os.path.join(out_dir, f"hydra_head{i}.onnx")
        torch.onnx.export(HydraHeadExport(heads, i, E, W, vocab), (torch.randn(2, D), torch.zeros(2, i + 1, dtype=torch.int64)), path,
                          input_names=["hidden", "path_ids"], output_names=["topk_ids", "topk_logprobs"], opset_version=17,
                          dynamic_axes={"hidden": {0: "n"}, "path_ids": {0: "n"}, "topk_ids": {0: "n"}, "topk_logprobs": {0: "n"}})
        share_embedding(path, E)
        quantize_graph(path)
        files.append(os.path.basename(path))
    return files


def parser():
    """The command line, with this script's defaults (train_drafters.py reads them too)."""
    ap = drafter_args(argparse.ArgumentParser(), steps=400, seq=256, batch=16, lr=1e-3, seed=4321)
    ap.add_argument("--kind", choices=["medusa", "hydra"], required=True)
    ap.add_argument("--heads", type=int, default=4)
    return ap


def main(argv=None):
    a = parser().parse_args(argv)
    target, cfg, train, valid = drafter_setup(a)
    dev = device_of(target)
    gen = selfgen_sequences(a.work, target, train, a.selfgen, a.kind) if a.selfgen else None
    D = cfg.d_model
    heads = (MedusaHeads(D, a.heads) if a.kind == "medusa" else HydraHeads(D, a.heads)).to(dev)
    opt = torch.optim.AdamW(heads.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    n_params = sum(p.numel() for p in heads.parameters())
    print(f"[{a.kind}] {a.heads} heads, {n_params / 1e6:.3f} M parameters (+ the target's LM head), {a.steps} steps of "
          f"{a.batch}x{a.seq} tokens on {dev}", flush=True)
    weights = [0.8 ** k for k in range(a.heads)]

    def train_step(step):
        x = mixed_batch(train, gen, step, a.seed, a.batch, a.seq, dev)
        losses, acc1, _ = head_losses(a.kind, heads, target, x, a.heads)
        loss = sum(w * l for w, l in zip(weights, losses))
        return loss, {"acc1": [round(v, 3) for v in acc1]}, f"top1 {' '.join(f'{v:.2f}' for v in acc1)}"

    step, elapsed = train_resumable(a.kind, heads, opt, os.path.join(a.work, f"{a.kind}.pt"), os.path.join(a.work, f"{a.kind}_log.jsonl"),
                                    a.steps, a.lr, train_step, state_key="heads")

    # held-out accuracy (agreement with the target's own next-token argmax at each offset)
    heads.eval()
    acc1s, acc5s = np.zeros(a.heads), np.zeros(a.heads)
    n = 0
    with torch.no_grad():
        for x in heldout_windows(valid, a.seq, dev):
            _, a1, a5 = head_losses(a.kind, heads, target, x, a.heads, with_loss=False)
            acc1s += np.array(a1)
            acc5s += np.array(a5)
            n += 1
    acc1s, acc5s = acc1s / n, acc5s / n
    # the same agreement on text like decoding sees: held-out prefixes, then the target's own
    # greedy continuation (positions inside the generated tokens)
    with torch.no_grad():
        vgen, prefix = heldout_continuations(a.work, target, valid, a.heldout_prompts)
        g1 = mean_over_batches(lambda x: head_losses(a.kind, heads, target, x, a.heads, start=prefix - 1, with_loss=False)[1], vgen)
    out_dir = os.path.join(a.model_dir, "heads")
    os.makedirs(out_dir, exist_ok=True)
    target.cpu()
    heads.cpu()
    E, W = target.embed.weight.detach(), target.lm_weight.detach()
    vocab, vocab_record = draft_vocab(train, cfg.vocab, a.draft_vocab)
    if a.kind == "medusa":
        export_medusa(heads, W, vocab, os.path.join(out_dir, "medusa.onnx"))
        files = ["medusa.onnx"]
    else:
        files = export_hydra(heads, E, W, vocab, a.heads, out_dir) + [EMBED_FILE]
    manifest = {
        "kind": a.kind, "heads": a.heads, "topk": TOPK, "hidden": "last (post-final-norm)", "hidden_size": D,
        "files": {f: os.path.getsize(os.path.join(out_dir, f)) for f in files},
        "parameters": int(n_params), "lm_head": lm_head_note(cfg),
        "draft_vocab": draft_vocab_record(vocab_record, vocab, vgen[:, prefix:].cpu()),
        "weights": QUANT_DESCRIPTION,
        "heldout_note": "accuracies of the trained fp32 heads over the full vocabulary; the exported graphs' (draft "
                        "vocabulary, int8) show in the bench's acceptance lengths",
        "training": {"steps": step, "seq": a.seq, "batch": a.batch, "lr": a.lr, "minutes": round(elapsed / 60, 1),
                     "labels": "self-distillation: target softmax at the matching position",
                     "data": selfgen_note(a.selfgen)},
        "heldout_top1": [round(float(v), 4) for v in acc1s], "heldout_top5": [round(float(v), 4) for v in acc5s],
        "heldout_greedy_top1": [round(float(v), 4) for v in g1],
        "offsets": [f"t+{k + 2}" for k in range(a.heads)],
    }
    json.dump(manifest, open(os.path.join(out_dir, f"{a.kind}.json"), "w"), indent=2)
    print(f"[{a.kind}] held-out top-1 {acc1s.round(3).tolist()} top-5 {acc5s.round(3).tolist()}, "
          f"on greedy continuations top-1 {np.round(g1, 3).tolist()}", flush=True)


if __name__ == "__main__":
    main()
