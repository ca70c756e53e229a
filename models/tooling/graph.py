"""Writes specserve's target graphs for a Llama-family decoder from its weights, with onnxruntime's
fused CPU kernels.

library use: build(weights, cfg, layout, dtype, split) -> onnx.ModelProto; read_weights(path, cfg)

`weights` maps Hugging Face names (model.embed_tokens.weight, model.layers.{i}.self_attn.q_proj.weight
[out, in], ...) to float32 numpy arrays; `cfg` is an ArchConfig. The same writer serves the bundled
model and converted checkpoints.

Why a writer rather than torch.onnx.export: a one-token decode step of a small model is bound by the
kernels it launches as much as by its weights. The torch export of specserve-tiny had 1,067 nodes:
RMSNorm as Pow/ReduceMean/Add/Sqrt/Div/Mul, RoPE as Slice/Neg/Concat/Mul/Add, attention as chains
of Reshape/Transpose/MatMul/Softmax. Written directly, a layer is 19 kernels:

  SkipSimplifiedLayerNormalization   residual add + RMSNorm in one pass (com.microsoft)
  MatMul | MatMulNBits               the q, k and v projections as one matrix
  Split, RotaryEmbedding x2          rotate-half RoPE from a cos/sin table (com.microsoft)
  Reshape x3, ScatterND x2           the new K/V rows into their cache slots (see _slot_index)
  MultiHeadAttention, Reshape        attention with an additive mask: the tree mask of speculative
                                     verification (com.microsoft; query heads folded, _fold_order)
  MatMul, SkipSimplifiedLayerNormalization
  MatMul                             the gate and up projections as one matrix
  Split, QuickGelu(alpha 1) = SiLU, Mul, MatMul

Layouts (inputs and outputs named as the engine expects; K/V past head-major [B, KV, P, hd]):
  speculative  input_ids, position_ids, attention_bias [B,1,T,P+T], past K/V per layer
               -> logits, hidden (post-norm), hidden_shallow (residual after `split` layers),
                  new K/V [B,T,KV,hd] (the new rows only)
  standard     the Hugging Face Optimum decoder: input_ids, attention_mask [B,P+T], position_ids,
               past -> logits, present K/V [B,KV,P+T,hd]
  deep         layers [split, L) fed hidden_shallow (Kangaroo verifies with them)
               -> logits, hidden, new K/V of those layers
  shallow      layers [0, split) -> hidden_shallow, new K/V of those layers (Kangaroo drafts with them)

Every layout computes a position's values bit for bit as the speculative one does, whatever the
number of rows in the call: speculative decoding's identity with plain decoding rests on it (see
_fold_order, and the zero skip in front of the deep layers).

dtype: fp32, or 8-bit / 4-bit weights for every projection and the LM head (com.microsoft
MatMulNBits, symmetric, blocks of 32, int8 compute). The embedding table stays fp32: a gather reads
one row per token.
"""
import math
import os
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import hf_config

OPSET = 17
NEG = -1e9           # blocked positions; not -inf, so a fully padded row gives no NaN
BLOCK = 32
# int8 compute: each activation row is quantized per block on its own, so a row's result does not
# depend on the other rows of the call (fp32 compute, accuracy levels 1-3, measured 1.4-50x slower)
ACCURACY_LEVEL = 4
DTYPES = {"fp32": None, "int8": 8, "int4": 4}
LAYOUTS = ("speculative", "standard", "deep", "shallow")
# file suffix per dtype; transformers.js's names for the standard graph (its dtype "int8" loads
# model_int8.onnx, "q4" model_q4.onnx), used for every graph
SUFFIX = {"fp32": "", "int8": "_int8", "int4": "_q4"}


@dataclass
class ArchConfig:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    rope_theta: float
    norm_eps: float
    context: int
    tied: bool = True
    qkv_bias: bool = False
    o_bias: bool = False  # Llama's attention_bias gives o_proj a bias too
    qk_norm: bool = False  # Qwen3: RMSNorm over each head's q and k before RoPE (q_norm, k_norm)
    # inverse RoPE frequencies when rope_scaling changes them (llama3, linear); None = rope_theta's
    inv_freq: np.ndarray = field(default=None, repr=False)

    @staticmethod
    def from_hf(c):
        """From a Hugging Face config.json dict, with transformers' defaults, biases and RoPE scaling
        (hf_config.py); the RoPE tables cover config.json's specserve.context when it has one."""
        return ArchConfig(**hf_config.arch_fields(c))

    def rope_inv_freq(self):
        if self.inv_freq is not None:
            return np.asarray(self.inv_freq, np.float64)
        return 1.0 / (self.rope_theta ** (np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim))


def describe(dtype):
    """How a dtype's weights are stored, for config.json and the manifests."""
    bits = DTYPES[dtype]
    if bits is None:
        return "fp32"
    scale = "amax / 127, as llama.cpp's Q8_0" if bits == 8 else "largest-magnitude entry / -8, as llama.cpp's Q4_0"
    return (f"{bits}-bit weights in blocks of {BLOCK} (scale {scale}), int8 compute (com.microsoft MatMulNBits, "
            f"accuracy_level {ACCURACY_LEVEL}); embedding table fp32; models/tooling/graph.py")


class _Graph:
    """Nodes, initializers and unique names for one graph."""

    def __init__(self):
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.names = set()

    def name(self, stem):
        n, i = stem, 1
        while n in self.names:
            i += 1
            n = f"{stem}_{i}"
        self.names.add(n)
        return n

    def const(self, stem, arr):
        n = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def op(self, op_type, inputs, n_out=1, stem=None, domain=None, outputs=None, **attrs):
        stem = stem or op_type.lower()
        n_out = len(outputs) if outputs else n_out
        outs = outputs or [self.name(f"{stem}_out{i}" if n_out > 1 else f"{stem}_out") for i in range(n_out)]
        kw = {"domain": domain} if domain else {}
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(stem), **kw, **attrs))
        return outs if n_out > 1 else outs[0]


def quantize_blocks(W, bits):
    """W [K, N] float32 (MatMul's B) -> MatMulNBits' B [N, blocks, BLOCK*bits/8] uint8 and scales
    [N * blocks]. Symmetric per block of BLOCK inputs, codes offset by 2^(bits-1) (the op's default
    zero point). 8-bit: scale = amax / 127 (llama.cpp's Q8_0). 4-bit: scale = m / -8 with m the
    block's entry of largest magnitude, so the codes use all of [-8, 7] (llama.cpp's Q4_0)."""
    K, N = W.shape
    nb = -(-K // BLOCK)
    pad = np.zeros((N, nb * BLOCK), np.float32)
    pad[:, :K] = W.T
    blk = pad.reshape(N, nb, BLOCK)
    if bits == 8:
        scale = np.maximum(np.abs(blk).max(axis=2), 1e-12) / 127.0  # an all-zero block keeps a nonzero scale
        lo, hi = -127, 127
    else:
        idx = np.abs(blk).argmax(axis=2)
        scale = np.take_along_axis(blk, idx[..., None], axis=2)[..., 0] / -8.0
        lo, hi = -8, 7
    safe = np.where(scale == 0, 1.0, scale)
    q = (np.clip(np.round(blk / safe[..., None]), lo, hi) + 2 ** (bits - 1)).astype(np.uint8)
    if bits == 4:  # two codes a byte, the lower index in the low nibble
        q = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return q, scale.reshape(-1).astype(np.float32)


def _dense(g, x, W, stem, dtype):
    """x @ W (W [K, N] float32) as MatMul or MatMulNBits."""
    bits = DTYPES[dtype]
    if bits is None:
        return g.op("MatMul", [x, g.const(stem + ".weight", W.astype(np.float32))], stem=stem)
    q, s = quantize_blocks(W.astype(np.float32), bits)
    K, N = W.shape
    return g.op("MatMulNBits", [x, g.const(stem + ".qweight", q), g.const(stem + ".scales", s)], stem=stem,
                domain="com.microsoft", K=K, N=N, bits=bits, block_size=BLOCK, accuracy_level=ACCURACY_LEVEL)


def _fold_order(cfg):
    """Grouped-query attention is computed as multi-head attention over the KV heads, with the G
    query heads that share a KV head as G rows per token: row t*G + j, columns (kv head, dim), holds
    query head kv*G + j of token t. Returns the permutation of q_proj's output rows that makes the
    projection emit that order, so [B, T, H*hd] reshapes to [B, T*G, KV*hd] without a copy (and
    the inverse for o_proj's input columns).

    Why: onnxruntime's CPU attention computes a single query row on another path than several, and
    the results differ in the last bits. Speculative verification scores T > 1 rows where plain
    decoding scores one, so with one row per head the two could choose differently on a near-tie.
    Folded, every head sees G >= 2 rows and each row is computed the same way whatever T is: a
    position's logits are bit-identical in prefill, plain decoding, batches and draft chains. (A
    tree node with a masked sibling before it is summed in another order and can differ in the last
    bits; a model without grouped heads, G = 1, keeps the one-row path.)"""
    H, KV, hd = cfg.heads, cfg.kv_heads, cfg.head_dim
    G = H // KV
    heads = [kv * G + j for j in range(G) for kv in range(KV)]
    return np.concatenate([np.arange(h * hd, (h + 1) * hd) for h in heads])


def _layer(g, cfg, w, i, resid, delta, bias, slots, dtype, outputs):
    """Decoder block i. Its input is resid + delta (delta None: resid alone), summed inside the norm.
    Returns (attention residual, MLP output): the block's output is their sum, taken by whatever
    reads it next. `outputs` names graph outputs produced here: "block_in" (the block's input),
    "new_k"/"new_v" ([B,T,KV,hd]), "present_k"/"present_v" (standard layout)."""
    p = f"model.layers.{i}"
    H, KV, hd = cfg.heads, cfg.kv_heads, cfg.head_dim
    ln1 = g.const(f"{p}.input_layernorm.weight", w[f"{p}.input_layernorm.weight"])
    if delta is None:
        h = g.op("SimplifiedLayerNormalization", [resid, ln1], stem=f"{p}.input_layernorm", axis=-1, epsilon=cfg.norm_eps)
        block_in = resid
    else:
        names = [g.name(f"{p}.input_layernorm_out"), "", "", outputs.get("block_in") or g.name(f"{p}.block_in")]
        h, _, _, block_in = g.op("SkipSimplifiedLayerNormalization", [resid, delta, ln1], outputs=names,
                                 stem=f"{p}.input_layernorm", domain="com.microsoft", epsilon=cfg.norm_eps)
    order = _fold_order(cfg)
    Wq = w[f"{p}.self_attn.q_proj.weight"][order]
    Wqkv = np.concatenate([Wq.T, w[f"{p}.self_attn.k_proj.weight"].T, w[f"{p}.self_attn.v_proj.weight"].T], axis=1)
    qkv = _dense(g, h, Wqkv, f"{p}.self_attn.qkv_proj", dtype)
    if cfg.qkv_bias:
        b = np.concatenate([w[f"{p}.self_attn.q_proj.bias"][order], w[f"{p}.self_attn.k_proj.bias"], w[f"{p}.self_attn.v_proj.bias"]])
        qkv = g.op("Add", [qkv, g.const(f"{p}.self_attn.qkv_proj.bias", b.astype(np.float32))], stem=f"{p}.self_attn.qkv_bias")
    split = g.const(f"{p}.self_attn.qkv_split", np.array([H * hd, KV * hd, KV * hd], np.int64))
    q, k, v = g.op("Split", [qkv, split], n_out=3, stem=f"{p}.self_attn.qkv_split", axis=-1)
    if cfg.qk_norm:  # per head, so the folded order of q's heads does not matter
        q = _head_norm(g, cfg, w, q, f"{p}.self_attn.q_norm", H)
        k = _head_norm(g, cfg, w, k, f"{p}.self_attn.k_norm", KV)
    q = g.op("RotaryEmbedding", [q, "position_ids", "rope.cos_cache", "rope.sin_cache"], stem=f"{p}.self_attn.q_rotary",
             domain="com.microsoft", interleaved=0)
    k = g.op("RotaryEmbedding", [k, "position_ids", "rope.cos_cache", "rope.sin_cache"], stem=f"{p}.self_attn.k_rotary",
             domain="com.microsoft", interleaved=0)
    q_rows = g.op("Reshape", [q, g.const(f"{p}.self_attn.q_fold", np.array([0, -1, KV * hd], np.int64))], stem=f"{p}.self_attn.q_fold")
    kv_shape = g.const(f"{p}.self_attn.kv_shape", np.array([0, 0, KV, hd], np.int64))
    k4 = g.op("Reshape", [k, kv_shape], stem=f"{p}.self_attn.k_rows", outputs=[outputs["new_k"]] if "new_k" in outputs else None)  # [B,T,KV,hd]
    v4 = g.op("Reshape", [v, kv_shape], stem=f"{p}.self_attn.v_rows", outputs=[outputs["new_v"]] if "new_v" in outputs else None)
    past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
    scale = 1.0 / math.sqrt(hd)
    if slots is None:
        # standard layout: keys = past + new rows after it (the present outputs)
        outs = [g.name(f"{p}.attn_out"), outputs.get("present_k") or g.name(f"{p}.present_k"), outputs.get("present_v") or g.name(f"{p}.present_v")]
        g.op("MultiHeadAttention", [q_rows, k, v, "", "", bias, past_k, past_v], stem=f"{p}.self_attn.attention", outputs=outs,
             domain="com.microsoft", num_heads=KV, scale=scale)
        attn_rows = outs[0]
    else:
        # the new rows take their cache slots inside the past buffer (see _slot_index): keys stay
        # in cache order, so a position's attention sums the same keys in the same places
        # whatever else the call holds
        keys = g.op("ScatterND", [past_k, slots, k4], stem=f"{p}.self_attn.keys")      # [B,KV,P,hd]
        values = g.op("ScatterND", [past_v, slots, v4], stem=f"{p}.self_attn.values")
        attn_rows = g.op("MultiHeadAttention", [q_rows, keys, values, "", "", bias], stem=f"{p}.self_attn.attention",
                         domain="com.microsoft", num_heads=KV, scale=scale)
    attn = g.op("Reshape", [attn_rows, g.const(f"{p}.self_attn.unfold", np.array([0, -1, H * hd], np.int64))], stem=f"{p}.self_attn.unfold")
    o = _dense(g, attn, w[f"{p}.self_attn.o_proj.weight"][:, order].T, f"{p}.self_attn.o_proj", dtype)
    if cfg.o_bias:
        o = g.op("Add", [o, g.const(f"{p}.self_attn.o_proj.bias", w[f"{p}.self_attn.o_proj.bias"].astype(np.float32))],
                 stem=f"{p}.self_attn.o_bias")
    ln2 = g.const(f"{p}.post_attention_layernorm.weight", w[f"{p}.post_attention_layernorm.weight"])
    h2, _, _, mid = g.op("SkipSimplifiedLayerNormalization", [block_in, o, ln2], n_out=4,
                         stem=f"{p}.post_attention_layernorm", domain="com.microsoft", epsilon=cfg.norm_eps)
    Wgu = np.concatenate([w[f"{p}.mlp.gate_proj.weight"].T, w[f"{p}.mlp.up_proj.weight"].T], axis=1)
    gu = _dense(g, h2, Wgu, f"{p}.mlp.gate_up_proj", dtype)
    F = cfg.intermediate
    gate, up = g.op("Split", [gu, g.const(f"{p}.mlp.split", np.array([F, F], np.int64))], n_out=2, stem=f"{p}.mlp.split", axis=-1)
    act = g.op("QuickGelu", [gate], stem=f"{p}.mlp.silu", domain="com.microsoft", alpha=1.0)
    prod = g.op("Mul", [act, up], stem=f"{p}.mlp.mul")
    down = _dense(g, prod, w[f"{p}.mlp.down_proj.weight"].T, f"{p}.mlp.down_proj", dtype)
    return mid, down


def build(w, cfg: ArchConfig, layout="speculative", dtype="fp32", split=None, embed_name="model.embed_tokens.weight"):
    """The graph of `layout` (see the module doc) with `dtype` weights. `split`: the layer count
    before hidden_shallow (speculative, deep, shallow). `embed_name`: the embedding initializer's
    name (a graph it is grafted into may already hold the table)."""
    if layout not in LAYOUTS or dtype not in DTYPES:
        raise ValueError(f"layout {layout!r} / dtype {dtype!r}: expected one of {LAYOUTS} / {tuple(DTYPES)}")
    if layout != "standard" and not (split is not None and 1 <= split < cfg.layers):
        raise ValueError(f"layout {layout} needs 1 <= split < {cfg.layers}, got {split}")
    if cfg.heads % cfg.kv_heads:
        raise ValueError(f"{cfg.heads} attention heads do not divide into {cfg.kv_heads} KV heads")
    g = _Graph()
    L, KV, hd, D, V = cfg.layers, cfg.kv_heads, cfg.head_dim, cfg.hidden, cfg.vocab
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    first, last = {"deep": (split, L), "shallow": (0, split)}.get(layout, (0, L))
    if layout == "standard":
        B, T, S, P = "batch_size", "sequence_length", "total_sequence_length", "past_sequence_length"
    else:
        B, T, S, P = "batch", "new", "total", "past"

    def inp(n, t, shape):
        g.inputs.append(helper.make_tensor_value_info(n, t, shape))
        g.names.add(n)

    def out(n, t, shape):
        g.outputs.append(helper.make_tensor_value_info(n, t, shape))
        g.names.add(n)

    inp(*(("hidden_shallow", f32, [B, T, D]) if layout == "deep" else ("input_ids", i64, [B, T])))
    if layout == "standard":
        inp("attention_mask", i64, [B, S])
    inp("position_ids", i64, [B, T])
    if layout != "standard":
        inp("cache_position", i64, [B, T])
        inp("attention_bias", f32, [B, 1, T, P])
    for i in range(first, last):
        for kv in ("key", "value"):
            inp(f"past_key_values.{i}.{kv}", f32, [B, KV, P, hd])
    if layout == "standard":
        out("logits", f32, [B, T, V])
        for i in range(L):
            for kv in ("key", "value"):
                out(f"present.{i}.{kv}", f32, [B, KV, S, hd])
    else:
        if layout != "shallow":
            out("logits", f32, [B, T, V])
            out("hidden", f32, [B, T, D])
        if layout in ("speculative", "shallow"):
            out("hidden_shallow", f32, [B, T, D])
        for i in range(first, last):
            for kv in ("key", "value"):
                out(f"new_key_values.{i}.{kv}", f32, [B, T, KV, hd])

    # rotate-half RoPE tables: cos/sin of position x frequency, [context, hd/2]
    ang = np.arange(cfg.context, dtype=np.float64)[:, None] * cfg.rope_inv_freq()[None, :]
    g.inits.append(numpy_helper.from_array(np.cos(ang).astype(np.float32), "rope.cos_cache"))
    g.inits.append(numpy_helper.from_array(np.sin(ang).astype(np.float32), "rope.sin_cache"))
    bias = _fold_bias(g, cfg, _causal_bias(g) if layout == "standard" else "attention_bias")
    slots = None if layout == "standard" else _slot_index(g, cfg)

    if layout == "deep":
        # the block's norm sums its input like every other block's (a zero skip adds nothing), so
        # its output is the full graph's to the bit; a plain RMSNorm kernel rounds differently
        resid, delta = "hidden_shallow", g.op("ConstantOfShape", [g.op("Shape", ["hidden_shallow"], stem="deep.shape")],
                                              stem="deep.zero_skip", value=helper.make_tensor("zero", f32, [1], [0.0]))
    else:
        if embed_name == "model.embed_tokens.weight":
            g.const(embed_name, w["model.embed_tokens.weight"].astype(np.float32))
        resid, delta = g.op("Gather", [embed_name, "input_ids"], stem="model.embed_tokens", axis=0), None

    for i in range(first, last):
        if layout == "standard":
            outputs = {"present_k": f"present.{i}.key", "present_v": f"present.{i}.value"}
        else:
            outputs = {"new_k": f"new_key_values.{i}.key", "new_v": f"new_key_values.{i}.value"}
        if layout == "speculative" and i == split:
            outputs["block_in"] = "hidden_shallow"
        resid, delta = _layer(g, cfg, w, i, resid, delta, bias, slots, dtype, outputs)

    if layout == "shallow":
        g.op("Add", [resid, delta], outputs=["hidden_shallow"], stem="hidden_shallow")
    else:
        norm = g.const("model.norm.weight", w["model.norm.weight"])
        hidden = "hidden" if layout != "standard" else g.name("hidden")
        g.op("SkipSimplifiedLayerNormalization", [resid, delta, norm], outputs=[hidden, "", "", ""], stem="model.norm",
             domain="com.microsoft", epsilon=cfg.norm_eps)
        if dtype == "fp32" and cfg.tied:
            if layout == "deep":  # the table as the head reads it; write_graphs.py may store it outside
                g.const(embed_name, w["model.embed_tokens.weight"].astype(np.float32))
            # the tied head reads the embedding table itself, transposed by the kernel (no copy of it)
            g.op("FusedMatMul", [hidden, embed_name], outputs=["logits"], stem="lm_head", domain="com.microsoft", transB=1)
        else:
            head = w["model.embed_tokens.weight"] if cfg.tied else w["lm_head.weight"]  # [V, D]
            logits = _dense(g, hidden, head.T, "lm_head", dtype)
            g.op("Identity", [logits], outputs=["logits"], stem="logits")

    graph = helper.make_graph(g.nodes, f"specserve-{layout}-{dtype}", g.inputs, g.outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
                              producer_name="specserve models/tooling/graph.py")
    model.ir_version = 8
    return model


def _slot_index(g, cfg):
    """cache_position [B,T] -> the ScatterND index [B,T,KV,3] = (b, kv head, cache_position[b,t]):
    new row t of batch row b, head kv ([B,T,KV,hd] as the projection gives it), goes to key index
    cache_position[b,t] of the head-major past buffer [B,KV,P,hd].

    Why the new rows go inside the buffer instead of after it: the attention kernel sums a query's
    softmax over the keys in vector lanes by key index. With the new rows after a padded past
    (rows of other lengths in the batch, room kept for growth), a position's keys sit at different
    indices in a verification step than when the same position is decoded alone, and the last bits
    of the result differ; 8-bit activation quantization downstream turns such bits into visible
    differences. In cache order every position sees its keys at the same indices in every call, with
    masked keys only after them: prefill chunks, single steps, batches and draft chains give the
    same bits."""
    KV = cfg.kv_heads
    bt = g.op("Shape", ["cache_position"], stem="slots.bt")                                                 # [B, T]
    target = g.op("Concat", [bt, g.const("slots.kv1", np.array([KV, 1], np.int64))], stem="slots.target", axis=0)  # [B,T,KV,1]
    batch = g.op("Gather", [bt, g.const("slots.i0", np.array(0, np.int64))], stem="slots.batch", axis=0)
    rows = g.op("Range", [g.const("slots.zero", np.array(0, np.int64)), batch, g.const("slots.one", np.array(1, np.int64))], stem="slots.rows")
    cols = [
        g.op("Reshape", [rows, g.const("slots.b_shape", np.array([-1, 1, 1, 1], np.int64))], stem="slots.b"),  # [B,1,1,1]
        g.const("slots.kv", np.arange(KV, dtype=np.int64).reshape(1, 1, KV, 1)),                              # [1,1,KV,1]
        g.op("Unsqueeze", ["cache_position", g.const("slots.axes", np.array([2, 3], np.int64))], stem="slots.p"),  # [B,T,1,1]
    ]
    cols = [g.op("Expand", [c, target], stem=f"slots.col{i}") for i, c in enumerate(cols)]
    return g.op("Concat", cols, stem="slots.index", axis=3)


def _fold_bias(g, cfg, bias):
    """[B,1,T,S] -> [B,1,T*G,S], row t*G + j a copy of row t (the rows of _fold_order)."""
    G = cfg.heads // cfg.kv_heads
    if G == 1:
        return bias
    shape = g.op("Shape", [bias], stem="mask.bias_shape")
    b, s = (g.op("Gather", [shape, g.const(f"mask.dim{i}", np.array([i], np.int64))], stem=f"mask.bias_dim{i}", axis=0) for i in (0, 3))
    folded_shape = g.op("Concat", [b, g.const("mask.one_row", np.array([1, -1], np.int64)), s], stem="mask.folded_shape", axis=0)
    rows = g.op("Unsqueeze", [bias, g.const("mask.axis3", np.array([3], np.int64))], stem="mask.rows")                  # [B,1,T,1,S]
    copies = g.op("Expand", [rows, g.const("mask.groups", np.array([1, 1, 1, G, 1], np.int64))], stem="mask.copies")  # [B,1,T,G,S]
    return g.op("Reshape", [copies, folded_shape], stem="mask.folded")


def _causal_bias(g):
    """The standard layout's [B,1,T,S] additive mask from attention_mask [B,S]: position j of the
    total is visible to new token t when j <= S - T + t and attention_mask[b, j] = 1."""
    T = g.op("Gather", [g.op("Shape", ["input_ids"], stem="mask.ids_shape"), g.const("mask.i1", np.array(1, np.int64))], stem="mask.T", axis=0)
    S = g.op("Gather", [g.op("Shape", ["attention_mask"], stem="mask.mask_shape"), g.const("mask.i1b", np.array(1, np.int64))],
             stem="mask.S", axis=0)
    zero, one = g.const("mask.zero", np.array(0, np.int64)), g.const("mask.step", np.array(1, np.int64))
    qpos = g.op("Range", [g.op("Sub", [S, T], stem="mask.start"), S, one], stem="mask.qpos")                 # [T]
    kpos = g.op("Range", [zero, S, one], stem="mask.kpos")                                                  # [S]
    qcol = g.op("Unsqueeze", [qpos, g.const("mask.axis1", np.array([1], np.int64))], stem="mask.qcol")      # [T,1]
    causal = g.op("LessOrEqual", [kpos, qcol], stem="mask.causal")                                          # [T,S]
    pad = g.op("Cast", ["attention_mask"], stem="mask.pad", to=TensorProto.BOOL)                            # [B,S]
    pad4 = g.op("Unsqueeze", [pad, g.const("mask.axes12", np.array([1, 2], np.int64))], stem="mask.pad4")    # [B,1,1,S]
    allowed = g.op("And", [causal, pad4], stem="mask.allowed")                                              # [B,1,T,S]
    return g.op("Where", [allowed, g.const("mask.open", np.array(0.0, np.float32)), g.const("mask.blocked", np.array(NEG, np.float32))],
                stem="mask.bias")


def _head_norm(g, cfg, w, x, name, heads):
    """RMSNorm over each head_dim slice of x [B, T, heads * head_dim] with weight `name` [head_dim]."""
    hd = cfg.head_dim
    rows = g.op("Reshape", [x, g.const(f"{name}.split_heads", np.array([0, 0, heads, hd], np.int64))], stem=f"{name}.split_heads")
    normed = g.op("SimplifiedLayerNormalization", [rows, g.const(f"{name}.weight", w[f"{name}.weight"].astype(np.float32))],
                  stem=name, axis=-1, epsilon=cfg.norm_eps)
    return g.op("Reshape", [normed, g.const(f"{name}.join_heads", np.array([0, 0, heads * hd], np.int64))], stem=f"{name}.join_heads")


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


def read_weights(path, cfg: ArchConfig):
    """Hugging Face-named float32 weights from an fp32 graph this module wrote (speculative or
    standard layout): the inverse of build()'s fusing and permuting."""
    mo = onnx.load(path)
    init = {i.name: numpy_helper.to_array(i) for i in mo.graph.initializer}
    if "model.layers.0.self_attn.qkv_proj.weight" not in init:
        raise ValueError(f"{path}: not an fp32 graph written by models/tooling/graph.py")
    H, KV, hd, F = cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.intermediate
    inverse = np.argsort(_fold_order(cfg))
    w = {"model.embed_tokens.weight": init["model.embed_tokens.weight"], "model.norm.weight": init["model.norm.weight"]}
    for i in range(cfg.layers):
        p = f"model.layers.{i}"
        qkv = init[f"{p}.self_attn.qkv_proj.weight"].T               # [out, in]
        w[f"{p}.self_attn.q_proj.weight"] = qkv[: H * hd][inverse]
        w[f"{p}.self_attn.k_proj.weight"] = qkv[H * hd: (H + KV) * hd]
        w[f"{p}.self_attn.v_proj.weight"] = qkv[(H + KV) * hd:]
        if f"{p}.self_attn.qkv_proj.bias" in init:
            b = init[f"{p}.self_attn.qkv_proj.bias"]
            w[f"{p}.self_attn.q_proj.bias"] = b[: H * hd][inverse]
            w[f"{p}.self_attn.k_proj.bias"] = b[H * hd: (H + KV) * hd]
            w[f"{p}.self_attn.v_proj.bias"] = b[(H + KV) * hd:]
        w[f"{p}.self_attn.o_proj.weight"] = init[f"{p}.self_attn.o_proj.weight"].T[:, inverse]
        if f"{p}.self_attn.o_proj.bias" in init:
            w[f"{p}.self_attn.o_proj.bias"] = init[f"{p}.self_attn.o_proj.bias"]
        for norm in ("q_norm", "k_norm"):
            if f"{p}.self_attn.{norm}.weight" in init:
                w[f"{p}.self_attn.{norm}.weight"] = init[f"{p}.self_attn.{norm}.weight"]
        gu = init[f"{p}.mlp.gate_up_proj.weight"].T
        w[f"{p}.mlp.gate_proj.weight"], w[f"{p}.mlp.up_proj.weight"] = gu[:F], gu[F:]
        w[f"{p}.mlp.down_proj.weight"] = init[f"{p}.mlp.down_proj.weight"].T
        for n in ("input_layernorm", "post_attention_layernorm"):
            w[f"{p}.{n}.weight"] = init[f"{p}.{n}.weight"]
    if "lm_head.weight" in init:
        w["lm_head.weight"] = init["lm_head.weight"].T
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in w.items()}


def store_outside(model, name, file):
    """Points initializer `name` at `file` (beside the graph), which must already hold its bytes:
    graphs that share a table (Kangaroo's draft and deep graphs, the embedding) keep one copy."""
    for t in model.graph.initializer:
        if t.name == name:
            raw = numpy_helper.to_array(t).tobytes()
            with open(file, "rb") as f:
                if f.read() != raw:
                    raise ValueError(f"{file} does not hold the bytes of {name}")
            del t.external_data[:]
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", os.path.basename(file)), ("offset", "0"), ("length", str(len(raw)))):
                t.external_data.add(key=k, value=v)
            return
    raise KeyError(name)


# protobuf's limit is 2 GiB; a margin for the graph itself. SPECSERVE_EXTERNAL_DATA_ABOVE lowers it
# so that tests take the external-data path with a small model.
EXTERNAL_DATA_ABOVE = int(os.environ.get("SPECSERVE_EXTERNAL_DATA_ABOVE", 2_000_000_000 - (1 << 20)))


def save(model, path):
    """Writes the graph to a temporary file beside `path`, then renames it (never half a file);
    past 2 GB the weights go to an external data file `<name>.data` beside it."""
    tmp = path + ".tmp"
    if model.ByteSize() > EXTERNAL_DATA_ABOVE:
        data = os.path.basename(path) + ".data"
        onnx.save(model, tmp, save_as_external_data=True, all_tensors_to_one_file=True, location=data, size_threshold=1024)
    else:
        onnx.save(model, tmp)
    os.replace(tmp, path)
