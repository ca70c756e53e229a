"""Converts a Hugging Face Llama-family checkpoint folder into a specserve model folder.

usage: /usr/bin/python3 models/tooling/convert.py --from HF_DIR --to OUT_DIR [--dtype fp32,int8]
           [--shallow-layers N] [--context N] [--force]
       (or: npm run convert -- ...)

HF_DIR holds config.json (model_type llama, mistral, qwen2 or qwen3), model.safetensors or the shards of
model.safetensors.index.json (F32, F16 or BF16), tokenizer.json and, when it has them,
tokenizer_config.json, special_tokens_map.json, generation_config.json, chat_template.jinja.
OUT_DIR gets, per dtype (file suffix graph.SUFFIX: "", _int8, _q4):
  onnx/decoder_spec{sfx}.onnx   the speculative layout the engine runs (graph.py)
  onnx/model{sfx}.onnx          the Hugging Face Optimum layout (transformers.js loads it)
and the tokenizer files, generation_config.json (written from config.json's token ids when the
checkpoint has none), and config.json: the checkpoint's, plus a `specserve` block naming the graphs,
the served context and the checkpoint converted from (weights.py reads int8/int4-only folders' fp32
weights back from it).

Everything is checked before a graph is written: the config (hf_config.check: model types, RoPE
scaling, sliding windows, biases), every tensor's presence and shape, every safetensors header, and
that the tokenizer fits the embedding. The folder is built beside OUT_DIR and renamed into place, so
a failed conversion leaves nothing behind. Expected errors end with one line `convert: <message>` and
exit status 1 (2 for bad options).

library use: read_checkpoint(hf_dir, context=None, log=None) -> Source; convert(hf_dir, out_dir, dtypes, ...)
"""
import argparse
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import graph  # noqa: E402
import hf_config  # noqa: E402
import safetensors  # noqa: E402

DEFAULT_DTYPES = ("fp32", "int8")
# dtypes a Hugging Face user may ask for that graph.py does not write, and what to use instead
NOT_WRITTEN = {
    "fp16": "fp16 graphs are not written yet (graph.py writes fp32, int8 and int4): use fp32 to serve on CUDA, int8 or int4 on CPU",
    "bf16": "bf16 graphs are not written (graph.py writes fp32, int8 and int4): use fp32 to serve on CUDA, int8 or int4 on CPU",
}


class ConvertError(ValueError):
    """Input this conversion refuses; the message names what and why."""


# OSError: an unwritable --to, a full disk: one line too (the temporary folder is gone by then)
EXPECTED_ERRORS = (ConvertError, hf_config.ConfigError, safetensors.SafetensorsError, OSError)


@dataclass
class Source:
    """A checkpoint read into graph.build's form."""
    folder: str
    config: dict                  # its config.json
    cfg: graph.ArchConfig
    weights: dict                 # Hugging Face name -> float32 array
    files: dict                   # file name -> bytes, of every file the weights were read from
    notes: list = field(default_factory=list)


def _load_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConvertError(f"{path} not found ({what})") from None
    except json.JSONDecodeError as e:
        raise ConvertError(f"{path} is not valid JSON: {e}") from None


def expected_tensors(cfg: graph.ArchConfig):
    """{name: shape} of every tensor graph.build reads, in transformers' names and [out, in] order."""
    D, H, KV, hd, F, V = cfg.hidden, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.intermediate, cfg.vocab
    shapes = {"model.embed_tokens.weight": (V, D)}
    for i in range(cfg.layers):
        p = f"model.layers.{i}"
        shapes.update({f"{p}.input_layernorm.weight": (D,), f"{p}.post_attention_layernorm.weight": (D,),
                       f"{p}.self_attn.q_proj.weight": (H * hd, D), f"{p}.self_attn.k_proj.weight": (KV * hd, D),
                       f"{p}.self_attn.v_proj.weight": (KV * hd, D), f"{p}.self_attn.o_proj.weight": (D, H * hd)})
        if cfg.qkv_bias:
            shapes.update({f"{p}.self_attn.q_proj.bias": (H * hd,), f"{p}.self_attn.k_proj.bias": (KV * hd,),
                           f"{p}.self_attn.v_proj.bias": (KV * hd,)})
        if cfg.o_bias:
            shapes[f"{p}.self_attn.o_proj.bias"] = (D,)
        if cfg.qk_norm:
            shapes.update({f"{p}.self_attn.q_norm.weight": (hd,), f"{p}.self_attn.k_norm.weight": (hd,)})
        shapes.update({f"{p}.mlp.gate_proj.weight": (F, D), f"{p}.mlp.up_proj.weight": (F, D),
                       f"{p}.mlp.down_proj.weight": (D, F)})
    shapes["model.norm.weight"] = (D,)
    if not cfg.tied:
        shapes["lm_head.weight"] = (V, D)
    return shapes


def read_config(folder, context=None):
    """(config.json, graph.ArchConfig for the served context), refusing what the graphs cannot serve."""
    config = _load_json(os.path.join(folder, "config.json"), "the checkpoint's configuration")
    served = hf_config.check(config, context)
    return config, graph.ArchConfig(**hf_config.arch_fields(config, context=served))


def check_tensors(ckpt: safetensors.Checkpoint, cfg: graph.ArchConfig):
    """Every tensor the graphs need, present with its shape and readable; returns notes on the rest."""
    expected = expected_tensors(cfg)
    where = ckpt.files[0] if len(ckpt.files) == 1 else os.path.join(ckpt.folder, safetensors.INDEX)
    for name, shape in expected.items():
        if name not in ckpt.entries:
            raise ConvertError(f"tensor {name} is missing from {where}" +
                               ("" if name != "lm_head.weight" else " (tie_word_embeddings is false, so the LM head is its own tensor)"))
        e = ckpt.info(name)
        if tuple(e.shape) != tuple(shape):
            raise ConvertError(f"tensor {name} in {os.path.basename(e.file)} has shape {list(e.shape)}; "
                               f"config.json gives {list(shape)}")
        if e.dtype not in safetensors.READABLE:
            raise ConvertError(f"tensor {name} in {os.path.basename(e.file)} is {e.dtype}; "
                               f"supported: {', '.join(safetensors.READABLE)}")
    notes = []
    extra = [n for n in ckpt.names() if n not in expected]
    if cfg.tied and "lm_head.weight" in extra:
        notes.append("lm_head.weight ignored: tie_word_embeddings is true, the LM head is the embedding table")
        extra.remove("lm_head.weight")
    if extra:
        shown = ", ".join(extra[:4]) + (f" and {len(extra) - 4} more" if len(extra) > 4 else "")
        notes.append(f"{len(extra)} tensor(s) the graphs do not use, ignored (as transformers does): {shown}")
    return notes


def read_checkpoint(folder, context=None, log=None, config=None):
    """The checkpoint's weights in graph.build's form, every check done before the first tensor is
    read. `log(line)` gets a line per tensor read; `config`: read_config's answer, when the caller
    has it already."""
    folder = os.path.abspath(folder)
    if not os.path.isdir(folder):
        raise ConvertError(f"{folder} is not a folder")
    config, cfg = config or read_config(folder, context)
    ckpt = safetensors.open_checkpoint(folder)
    notes = check_tensors(ckpt, cfg)
    weights = {}
    for name in expected_tensors(cfg):
        e = ckpt.info(name)
        weights[name] = ckpt.read(name)
        if log:
            log(f"[read] {name} {list(e.shape)} {e.dtype} {e.nbytes / 1e6:.1f} MB")
    files = [os.path.join(folder, "config.json")] + ckpt.files
    if os.path.exists(os.path.join(folder, safetensors.INDEX)):
        files.append(os.path.join(folder, safetensors.INDEX))
    return Source(folder, config, cfg, weights, {os.path.basename(f): os.path.getsize(f) for f in files}, notes)


def tokenizer_size(path):
    """Token ids tokenizer.json can produce: 1 + the largest id of its vocabulary and added tokens."""
    tok = _load_json(path, "the tokenizer the server loads")
    vocab = (tok.get("model") or {}).get("vocab")
    ids = []
    if isinstance(vocab, dict):      # BPE, WordPiece, WordLevel: token -> id
        ids = list(vocab.values())
    elif isinstance(vocab, list):    # Unigram: [token, score] in id order
        ids = [len(vocab) - 1] if vocab else []
    ids += [t["id"] for t in tok.get("added_tokens") or [] if isinstance(t.get("id"), int)]
    return max(ids) + 1 if ids else 0


def check_tokenizer(folder, vocab_size):
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.exists(path):
        raise ConvertError(f"{path} not found: the server tokenizes with tokenizer.json (Hugging Face tokenizers' format)")
    n = tokenizer_size(path)
    if n > vocab_size:
        raise ConvertError(f"{path} has token ids up to {n - 1}, which does not fit the embedding of "
                           f"vocab_size {vocab_size} (config.json)")
    return n


def generation_config(folder, config):
    """The checkpoint's generation_config.json, or one made from config.json's token ids as
    transformers does when a checkpoint has none."""
    path = os.path.join(folder, "generation_config.json")
    if os.path.exists(path):
        return _load_json(path, "generation settings")
    return {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if config.get(k) is not None}


def parse_dtypes(text):
    dtypes = [d.strip() for d in text.split(",") if d.strip()]
    for d in dtypes:
        if d in NOT_WRITTEN:
            raise ConvertError(f"--dtype {d}: {NOT_WRITTEN[d]}")
        if d not in graph.DTYPES:
            raise ConvertError(f"--dtype {d!r} is not one of {', '.join(graph.DTYPES)}")
    if not dtypes:
        raise ConvertError("--dtype names no dtype")
    return [d for d in graph.DTYPES if d in dtypes]


def default_split(layers):
    """Layers before hidden_shallow, where Kangaroo's adapter reads the shallow state: a sixteenth of
    the model, at least 1 (Kangaroo exits after 2 of Vicuna-7B's 32 layers; specserve-tiny after 1
    of 6, models/README.md). The speculative graph needs 1 <= split < layers."""
    return max(1, layers // 16)


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def _check_target(src, out, force):
    if os.path.realpath(out) == os.path.realpath(src) or os.path.realpath(src).startswith(os.path.realpath(out) + os.sep):
        raise ConvertError(f"--to {out} would replace the checkpoint it is converted from")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConvertError(f"--to {out} exists and is not a folder")
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise ConvertError(f"--to {out} exists and is not empty; pass --force to replace it")


def _print(line):
    print(line, flush=True)


def convert(src, out, dtypes=DEFAULT_DTYPES, shallow_layers=None, context=None, force=False, log=_print):
    """Writes the model folder `out` from the checkpoint folder `src` (see the module doc)."""
    src, out = os.path.abspath(src), os.path.abspath(out)
    dtypes = [d for d in graph.DTYPES if d in dtypes]
    if not os.path.isdir(src):
        raise ConvertError(f"--from {src} is not a folder")
    _check_target(src, out, force)
    # the cheap checks first: nothing is read or written for a checkpoint that cannot be served
    config, cfg = read_config(src, context)
    if "specserve" in config and not any(f.endswith(".safetensors") for f in os.listdir(src)):
        raise ConvertError(f"--from {src} is a specserve model folder already; to convert it again, write it as a "
                           "checkpoint first: /usr/bin/python3 models/tooling/checkpoint.py HF_DIR --from-model-folder " + src)
    split = default_split(cfg.layers) if shallow_layers is None else shallow_layers
    if not 1 <= split < cfg.layers:
        raise ConvertError(f"--shallow-layers {split}: the speculative graph needs 1 <= N < num_hidden_layers ({cfg.layers})"
                           if cfg.layers > 1 else "a 1-layer model has no layer for the speculative graph's shallow exit")
    tokens = check_tokenizer(src, cfg.vocab)
    tmp = os.path.join(os.path.dirname(out), f"{os.path.basename(out)}.tmp-{os.getpid()}")
    try:
        os.makedirs(os.path.join(tmp, "onnx"))
        t0 = time.time()
        source = read_checkpoint(src, context, log, config=(config, cfg))
        for note in source.notes:
            log(f"[note] {note}")
        variants = {}
        for dtype in dtypes:
            sfx = graph.SUFFIX[dtype]
            files = {"speculative_onnx": f"onnx/decoder_spec{sfx}.onnx", "standard_onnx": f"onnx/model{sfx}.onnx"}
            for key, layout in (("speculative_onnx", "speculative"), ("standard_onnx", "standard")):
                t1 = time.time()
                path = os.path.join(tmp, files[key])
                graph.save(graph.build(source.weights, cfg, layout, dtype, split=split), path)
                log(f"[graph] {files[key]}: {os.path.getsize(path) / 1e6:.1f} MB in {time.time() - t1:.1f}s")
            variants[dtype] = {**files, "weights": graph.describe(dtype)}
        for f in (f for f in hf_config.TOKENIZER_FILES if os.path.exists(os.path.join(src, f))):
            shutil.copyfile(os.path.join(src, f), os.path.join(tmp, f))
        gen = generation_config(src, config)
        if gen.get("eos_token_id") is None:
            log("[note] no eos_token_id in generation_config.json or config.json: generation stops at max_tokens only")
        _write_json(os.path.join(tmp, "generation_config.json"), gen)
        spec = {}
        if "fp32" in variants:  # older readers take these; a folder without fp32 graphs names none
            spec.update(speculative_onnx=variants["fp32"]["speculative_onnx"], standard_onnx=variants["fp32"]["standard_onnx"])
        spec.update(past_layout="head-major", shallow_layers=split, dtypes=variants, graphs="models/tooling/graph.py",
                    context=cfg.context, converted_from={"path": src, "model_type": config["model_type"], "files": source.files})
        _write_json(os.path.join(tmp, "config.json"), {**{k: v for k, v in config.items() if k != "specserve"}, "specserve": spec})
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"[done] {out}: {', '.join(dtypes)} graphs, {cfg.layers} layers, context {cfg.context}, "
        f"tokenizer {tokens} tokens in vocab {cfg.vocab}, {time.time() - t0:.0f}s")


def _replace(tmp, out):
    """Renames the finished folder into place; an existing one is renamed away first and deleted
    after, so `out` is never a half-written folder."""
    if not os.path.isdir(out):
        os.replace(tmp, out)
        return
    old = os.path.join(os.path.dirname(out), f"{os.path.basename(out)}.old-{os.getpid()}")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="convert", description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="src", required=True, metavar="HF_DIR", help="Hugging Face checkpoint folder")
    ap.add_argument("--to", dest="out", required=True, metavar="OUT_DIR", help="model folder to write")
    ap.add_argument("--dtype", default=",".join(DEFAULT_DTYPES),
                    help="weight formats, comma-separated: fp32 (CUDA, and the weights drafter training reads), "
                         "int8, int4 (CPU). Default: %(default)s")
    ap.add_argument("--shallow-layers", type=int, default=None, metavar="N",
                    help="layers before hidden_shallow, Kangaroo's exit (default: num_hidden_layers / 16, at least 1)")
    ap.add_argument("--context", type=int, default=None, metavar="N",
                    help="context to serve, at most max_position_embeddings (default: max_position_embeddings)")
    ap.add_argument("--force", action="store_true", help="replace OUT_DIR when it exists and is not empty")
    a = ap.parse_args(argv)
    # a terminated conversion unwinds like a failed one: the temporary folder goes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        convert(a.src, a.out, parse_dtypes(a.dtype), a.shallow_layers, a.context, a.force)
    except EXPECTED_ERRORS as e:
        print(f"convert: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("convert: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
