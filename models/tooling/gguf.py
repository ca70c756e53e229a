"""A GGUF file of specserve-tiny for llama.cpp, on the same weights specserve serves.

usage: /usr/bin/python3 models/tooling/gguf.py MODEL_DIR OUT.gguf --type f32|q8_0|q4_0

The weights are read back from MODEL_DIR/onnx/decoder_spec.onnx (graph.read_weights), the tokenizer from
MODEL_DIR/tokenizer.json and the hyperparameters from MODEL_DIR/config.json. `write_llama_gguf` takes
Hugging Face names, a config.json dict and a tokenizer.json dict, so a converter for Hugging Face
Llama checkpoints can reuse it with weights loaded some other way.

Tensor types per --type, chosen as llama.cpp's own tools choose them so the peer is measured on the
files people run:
  f32   every tensor f32 (convert_hf_to_gguf.py --outtype f32)
  q8_0  every 2-D weight Q8_0, token_embd included; norms f32 (convert_hf_to_gguf.py --outtype q8_0)
  q4_0  every 2-D weight Q4_0 except the output projection, which is Q6_K: with tied embeddings that
        is token_embd itself; norms f32 (llama-quantize ... Q4_0, which gives the output tensor Q6_K
        unless its rows are not a multiple of 256, then Q8_0). The Q6_K scales follow ggml's
        reference search without an importance matrix; bit-identity with llama-quantize is not a
        goal.
The format is GGUF v3 (ggml's docs/gguf.md): little-endian header, typed metadata, tensor infos
with ggml's dimension order (a torch [out, in] weight is ne0=in, ne1=out), data aligned to 32.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

ALIGNMENT = 32

# ggml tensor types (ggml.h enum ggml_type): id, elements per block, bytes per block
F32, F16, Q4_0, Q8_0, Q6_K = "F32", "F16", "Q4_0", "Q8_0", "Q6_K"
GGML_TYPES = {F32: (0, 1, 4), F16: (1, 1, 2), Q4_0: (2, 32, 18), Q8_0: (8, 32, 34), Q6_K: (14, 256, 210)}

# llama_ftype recorded as general.file_type
FILE_TYPES = {"f32": 0, "q8_0": 7, "q4_0": 2}

# GGUF metadata value types
U8, I8, U16, I16, U32, I32, F32V, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR_FORMATS = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32V: "<f", BOOL: "<?",
                  U64: "<Q", I64: "<q", F64: "<d"}

# llama.cpp's token types (llama_token_type)
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5


# ---- quantization, one row of ggml blocks per weight row ----

def _blocks(w, size):
    rows, cols = w.shape
    if cols % size:
        raise ValueError(f"{cols} columns are not a multiple of the block size {size}")
    return np.ascontiguousarray(w, dtype=np.float32).reshape(rows, cols // size, size)


def _signed_absmax(b):
    """The element of largest magnitude along the last axis, sign kept (the first one on ties, as
    ggml's loops keep it)."""
    i = np.abs(b).argmax(axis=-1)
    return np.take_along_axis(b, i[..., None], axis=-1)[..., 0]


def _pack(rows, *parts):
    """Concatenates per-block byte fields into rows of whole blocks."""
    return np.concatenate([p.reshape(p.shape[0], p.shape[1], -1).view(np.uint8) for p in parts], axis=2).reshape(rows, -1)


def quantize_q8_0(w):
    """Blocks of 32: fp16 d = amax/127, then 32 int8 codes round(x/d), halves away from zero (C's
    roundf; numpy's rint would round them to even)."""
    b = _blocks(w, 32)
    d = np.abs(b).max(axis=-1) / np.float32(127)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    x = b * inv[..., None]
    q = (np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))).astype(np.int8)
    return _pack(w.shape[0], d.astype(np.float16)[..., None], q)


def quantize_q4_0(w):
    """Blocks of 32: fp16 d = m/-8 (m the signed element of largest magnitude, so it maps to code 0),
    codes min(15, trunc(x/d + 8.5)); byte j holds element j in its low nibble and element j+16 in its
    high nibble."""
    b = _blocks(w, 32)
    d = _signed_absmax(b) / np.float32(-8)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(15, np.trunc(b * inv[..., None] + np.float32(8.5))).astype(np.uint8)
    qs = q[..., :16] | (q[..., 16:] << 4)
    return _pack(w.shape[0], d.astype(np.float16)[..., None], qs)


def _qx_scales(x, nmax):
    """ggml's make_qx_quants (rmse_type 1, no importance matrix) for every group of x's last axis at
    once: the scale whose codes in [-nmax, nmax-1] minimise the x^2-weighted squared error, searched
    over 19 candidate inverse scales around -nmax/m."""
    m = _signed_absmax(x)
    live = np.abs(m) >= 1e-15  # ggml's GROUP_MAX_EPS: a group below it stays all zero
    m = np.where(live, m, np.float32(1))
    w = x * x

    def fit(iscale):
        codes = np.clip(np.rint(iscale[..., None] * x), -nmax, nmax - 1)
        return (w * x * codes).sum(axis=-1), (w * codes * codes).sum(axis=-1)

    sumlx, suml2 = fit(np.float32(-nmax) / m)
    scale = np.divide(sumlx, suml2, out=np.zeros_like(sumlx), where=suml2 != 0)
    best = scale * sumlx
    for step in [s for s in range(-9, 10) if s != 0]:
        sumlx, suml2 = fit(-(np.float32(nmax) + np.float32(0.1) * np.float32(step)) / m)
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        scale = np.where(better, sumlx / np.where(suml2 > 0, suml2, 1), scale)
        best = np.where(better, scale * sumlx, best)
    return np.where(live, scale, np.float32(0)).astype(np.float32)


def quantize_q6_k(w):
    """Super-blocks of 256 = 16 groups of 16: a 6-bit code per element, an int8 scale per group and an
    fp16 scale per super-block (ggml's block_q6_K: ql[128] low nibbles, qh[64] high bit pairs,
    scales[16], d)."""
    rows = w.shape[0]
    b = _blocks(w, 256)
    g = b.reshape(rows, -1, 16, 16)
    scales = _qx_scales(g, 32)
    top = _signed_absmax(scales)
    live = np.abs(top) >= 1e-15
    iscale = np.float32(-128) / np.where(live, top, np.float32(1))
    d = np.where(live, np.float32(1) / iscale, np.float32(0)).astype(np.float16)
    sc = np.where(live[..., None], np.minimum(127, np.rint(iscale[..., None] * scales)), 0).astype(np.int8)
    step = d.astype(np.float32)[..., None] * sc.astype(np.float32)
    # a group whose effective step is zero dequantizes to zero whatever its codes; 32 is code 0
    q = np.clip(np.rint(np.divide(g, step[..., None], out=np.zeros_like(g), where=step[..., None] != 0)), -32, 31)
    L = (q + 32).astype(np.uint8).reshape(rows, -1, 2, 4, 32)  # [.., half of 128, quarter of 128, l]
    lo, hi = L & 15, L >> 4
    ql = np.concatenate([lo[:, :, :, 0] | (lo[:, :, :, 2] << 4), lo[:, :, :, 1] | (lo[:, :, :, 3] << 4)], axis=3)
    qh = hi[:, :, :, 0] | (hi[:, :, :, 1] << 2) | (hi[:, :, :, 2] << 4) | (hi[:, :, :, 3] << 6)
    return _pack(rows, ql, qh, sc, d[..., None])


QUANTIZERS = {Q8_0: quantize_q8_0, Q4_0: quantize_q4_0, Q6_K: quantize_q6_k}


def encode(w, ggml_type):
    """Raw bytes of a tensor in `ggml_type`; a 2-D weight whose rows do not fill whole blocks falls
    back to F16, as llama.cpp's converter does."""
    if ggml_type == F32:
        return F32, np.ascontiguousarray(w, dtype=np.float32).view(np.uint8)
    if ggml_type == F16 or w.shape[-1] % GGML_TYPES[ggml_type][1]:
        return F16, np.ascontiguousarray(w, dtype=np.float16).view(np.uint8)
    return ggml_type, QUANTIZERS[ggml_type](w)


# ---- the Llama layout ----

def permute_rope_rows(w, heads):
    """Hugging Face Llama rotates the two halves of each head (rotate-half RoPE); llama.cpp's `llama`
    architecture rotates adjacent pairs. Interleaving each head's two halves row-wise turns one into
    the other (convert_hf_to_gguf.py does the same for Q with n_head and K with n_head_kv)."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama_tensors(weights, config, ftype):
    """(gguf name, array, requested ggml type) for every tensor, Hugging Face names in."""
    L = config["num_hidden_layers"]
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    weight = {"f32": F32, "q8_0": Q8_0, "q4_0": Q4_0}[ftype]
    tied = "lm_head.weight" not in weights
    embd = weights["model.embed_tokens.weight"]

    def head_type(w):
        # llama-quantize gives the output projection Q6_K for the 4-bit types (Q8_0 when its rows do not
        # fill Q6_K's super-blocks); the 8-bit converter leaves it Q8_0
        if ftype != "q4_0":
            return weight
        return Q6_K if w.shape[1] % 256 == 0 else Q8_0

    out = [("token_embd.weight", embd, head_type(embd) if tied else weight)]
    for i in range(L):
        p = f"model.layers.{i}."
        out += [
            (f"blk.{i}.attn_norm.weight", weights[p + "input_layernorm.weight"], F32),
            (f"blk.{i}.attn_q.weight", permute_rope_rows(weights[p + "self_attn.q_proj.weight"], heads), weight),
            (f"blk.{i}.attn_k.weight", permute_rope_rows(weights[p + "self_attn.k_proj.weight"], kv_heads), weight),
            (f"blk.{i}.attn_v.weight", weights[p + "self_attn.v_proj.weight"], weight),
            (f"blk.{i}.attn_output.weight", weights[p + "self_attn.o_proj.weight"], weight),
            (f"blk.{i}.ffn_norm.weight", weights[p + "post_attention_layernorm.weight"], F32),
            (f"blk.{i}.ffn_gate.weight", weights[p + "mlp.gate_proj.weight"], weight),
            (f"blk.{i}.ffn_up.weight", weights[p + "mlp.up_proj.weight"], weight),
            (f"blk.{i}.ffn_down.weight", weights[p + "mlp.down_proj.weight"], weight),
        ]
    out.append(("output_norm.weight", weights["model.norm.weight"], F32))
    if not tied:  # without output.weight llama.cpp multiplies by token_embd
        out.append(("output.weight", weights["lm_head.weight"], head_type(weights["lm_head.weight"])))
    return out


def tokenizer_metadata(tokenizer, config):
    """A byte-level BPE tokenizer.json as llama.cpp's `gpt2` tokenizer: the vocabulary's strings are
    already in GPT-2's byte-to-unicode alphabet, and a ByteLevel pre-tokenizer with use_regex splits
    with GPT-2's regex, which llama.cpp calls `gpt-2`."""
    model = tokenizer["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"tokenizer.json: model.type {model.get('type')!r}, only byte-level BPE is supported")
    pre = tokenizer.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        raise ValueError(f"tokenizer.json: pre_tokenizer {pre.get('type')!r} is not GPT-2's ByteLevel regex split")
    vocab = dict(model["vocab"])
    types = {}
    for t in tokenizer.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
        types[t["id"]] = TOKEN_CONTROL if t.get("special") else TOKEN_USER_DEFINED
    size = max(config["vocab_size"], max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    token_type = [TOKEN_UNUSED] * size
    for text, i in vocab.items():
        tokens[i] = text
        token_type[i] = types.get(i, TOKEN_NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    meta = {
        "tokenizer.ggml.model": (STR, "gpt2"),
        "tokenizer.ggml.pre": (STR, "gpt-2"),
        "tokenizer.ggml.tokens": (ARR, (STR, tokens)),
        "tokenizer.ggml.token_type": (ARR, (I32, token_type)),
        "tokenizer.ggml.merges": (ARR, (STR, merges)),
        "tokenizer.ggml.add_bos_token": (BOOL, False),
        "tokenizer.ggml.add_eos_token": (BOOL, False),
    }
    for key, field in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("padding", "pad_token_id")):
        if config.get(field) is not None:
            meta[f"tokenizer.ggml.{key}_token_id"] = (U32, config[field])
    return meta


def llama_metadata(config, name, ftype):
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    a = "llama"
    return {
        "general.architecture": (STR, a),
        "general.name": (STR, name),
        "general.file_type": (U32, FILE_TYPES[ftype]),
        "general.quantization_version": (U32, 2),
        "general.alignment": (U32, ALIGNMENT),
        f"{a}.vocab_size": (U32, config["vocab_size"]),
        f"{a}.context_length": (U32, config["max_position_embeddings"]),
        f"{a}.embedding_length": (U32, config["hidden_size"]),
        f"{a}.block_count": (U32, config["num_hidden_layers"]),
        f"{a}.feed_forward_length": (U32, config["intermediate_size"]),
        f"{a}.attention.head_count": (U32, config["num_attention_heads"]),
        f"{a}.attention.head_count_kv": (U32, config.get("num_key_value_heads", config["num_attention_heads"])),
        f"{a}.attention.key_length": (U32, head_dim),
        f"{a}.attention.value_length": (U32, head_dim),
        f"{a}.attention.layer_norm_rms_epsilon": (F32V, config["rms_norm_eps"]),
        f"{a}.rope.dimension_count": (U32, head_dim),
        f"{a}.rope.freq_base": (F32V, config.get("rope_theta", 10000.0)),
    }


# ---- the GGUF container ----

def _string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(vtype, value):
    if vtype == STR:
        return _string(value)
    if vtype == ARR:
        etype, items = value
        head = struct.pack("<IQ", etype, len(items))
        if etype == STR:
            return head + b"".join(_string(s) for s in items)
        return head + np.asarray(items, dtype=SCALAR_FORMATS[etype]).tobytes()
    return struct.pack(SCALAR_FORMATS[vtype], value)


def _padding(n):
    return b"\0" * (-n % ALIGNMENT)


def write_gguf(path, metadata, tensors):
    """metadata: {key: (value type, value)}; tensors: [(name, ggml type, shape as torch orders it, raw
    bytes)]. Written to a temporary file first, so an interrupted run never leaves a truncated file
    under `path`."""
    header = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(metadata))]
    for key, (vtype, value) in metadata.items():
        header += [_string(key), struct.pack("<I", vtype), _value(vtype, value)]
    offset = 0
    for name, ggml_type, shape, data in tensors:
        _, block, block_bytes = GGML_TYPES[ggml_type]
        if data.nbytes != int(np.prod(shape)) // block * block_bytes:
            raise ValueError(f"{name}: {data.nbytes} bytes do not hold {ggml_type} {list(shape)}")
        dims = list(reversed(shape))
        header += [_string(name), struct.pack("<I", len(dims)), struct.pack(f"<{len(dims)}Q", *dims),
                   struct.pack("<IQ", GGML_TYPES[ggml_type][0], offset)]
        offset += data.nbytes + len(_padding(data.nbytes))
    head = b"".join(header)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(head + _padding(len(head)))
            for _, _, _, data in tensors:
                f.write(data.tobytes())
                f.write(_padding(data.nbytes))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_llama_gguf(path, weights, config, tokenizer, ftype, name):
    """Hugging Face Llama weights ({name: float32 [out, in] array}), config.json and tokenizer.json
    dicts -> a llama.cpp GGUF file. Returns [(gguf name, ggml type, bytes)]."""
    tensors = []
    for gguf_name, w, requested in llama_tensors(weights, config, ftype):
        ggml_type, data = encode(w, requested)
        tensors.append((gguf_name, ggml_type, w.shape, data))
    meta = {**llama_metadata(config, name, ftype), **tokenizer_metadata(tokenizer, config)}
    write_gguf(path, meta, tensors)
    return [(n, t, d.nbytes) for n, t, _, d in tensors]


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        sys.exit(f"gguf.py: {path}: no such file")
    except json.JSONDecodeError as e:
        sys.exit(f"gguf.py: {path}: not valid JSON ({e})")


def main():
    # the ONNX reader (and onnx itself) only for the model folder's own graph: the writer above does not need it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import graph
    import write_graphs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--type", required=True, choices=sorted(FILE_TYPES), dest="ftype")
    a = ap.parse_args()
    if not os.path.isdir(a.model_dir):
        sys.exit(f"gguf.py: {a.model_dir}: no such model folder")
    config = _read_json(os.path.join(a.model_dir, "config.json"))
    tokenizer = _read_json(os.path.join(a.model_dir, "tokenizer.json"))
    for field in ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size",
                  "max_position_embeddings", "rms_norm_eps"):
        if field not in config:
            sys.exit(f"gguf.py: {a.model_dir}/config.json: missing field {field!r}")
    onnx_path = os.path.join(a.model_dir, "onnx", "decoder_spec.onnx")
    if not os.path.isfile(onnx_path):
        sys.exit(f"gguf.py: {onnx_path}: no such file")
    try:
        weights = write_graphs.load_weights(a.model_dir, graph.ArchConfig.from_hf(config))
    except (KeyError, ValueError) as e:
        sys.exit(f"gguf.py: {onnx_path}: cannot read the weights back ({e})")
    name = os.path.basename(os.path.normpath(a.model_dir))
    try:
        written = write_llama_gguf(a.out, weights, config, tokenizer, a.ftype, name)
    except (KeyError, ValueError) as e:
        sys.exit(f"gguf.py: {a.model_dir}: {e}")
    except OSError as e:
        sys.exit(f"gguf.py: {a.out}: {e.strerror}")
    by_type = {}
    for _, t, n in written:
        count, total = by_type.get(t, (0, 0))
        by_type[t] = (count + 1, total + n)
    parts = ", ".join(f"{t} {c} tensors {n / 1e6:.2f} MB" for t, (c, n) in sorted(by_type.items()))
    params = sum(w.size for w in weights.values())
    print(f"[gguf] {a.out}: {os.path.getsize(a.out) / 1e6:.2f} MB, --type {a.ftype}, {params / 1e6:.2f} M parameters ({parts})")


if __name__ == "__main__":
    main()
