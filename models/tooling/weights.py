"""The fp32 weights of a model folder, under Hugging Face names, whatever the folder was built from.

library use: load(model_dir) -> (graph.ArchConfig, {name: float32 ndarray})

Names and shapes are transformers' (model.embed_tokens.weight [V, D],
model.layers.{i}.self_attn.q_proj.weight [out, in], ..., lm_head.weight when untied), the form
graph.build() takes. Sources, in order:
  1. the fp32 speculative graph (config.json's specserve.dtypes.fp32.speculative_onnx, else
     onnx/decoder_spec.onnx) when the folder has it: graph.read_weights undoes its fusing and
     permuting, the weights the server runs, to the bit;
  2. else the Hugging Face checkpoint the folder was converted from (config.json's
     specserve.converted_from.path), for folders converted to int8 or int4 only: read by
     convert.read_checkpoint, with the conversion's checks, after its files are seen to have the
     names and sizes recorded at conversion.
The ArchConfig is always the folder's own (graph.ArchConfig.from_hf of its config.json: RoPE tables
for the served context, specserve.context). Errors: FileNotFoundError when there is no source,
ValueError (convert.ConvertError, hf_config.ConfigError, safetensors.SafetensorsError among them)
when the checkpoint changed since the conversion or cannot be read.
Every drafter training script and every graph writer reads the target through this one function.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert  # noqa: E402
import graph  # noqa: E402


def arch_config(model_dir):
    """The folder's graph.ArchConfig, from its config.json."""
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: not a model folder")
    with open(path) as f:
        return graph.ArchConfig.from_hf(json.load(f))


def load(model_dir):
    """(graph.ArchConfig, weights) of a model folder: from its fp32 speculative graph, else from the
    checkpoint it was converted from (see the module doc). Raises FileNotFoundError when it has
    neither, ValueError when the checkpoint is no longer the one converted."""
    cfg, fp32, source = check_source(model_dir)
    if fp32:
        return cfg, graph.read_weights(fp32, cfg)
    read = convert.read_checkpoint(source, context=cfg.context)
    if not _same_arch(read.cfg, cfg):
        raise ValueError(f"{source}/config.json no longer describes the model {model_dir} was converted to")
    return cfg, read.weights


def check_source(model_dir):
    """What load would read, checked without reading it: (graph.ArchConfig, the fp32 graph's path
    or None, the checkpoint folder or None). Raises as load does, so a caller that starts many
    readers (train_drafters.py) can refuse in one line before any of them."""
    cfg = arch_config(model_dir)
    with open(os.path.join(model_dir, "config.json")) as f:
        spec = json.load(f).get("specserve") or {}
    fp32 = os.path.join(model_dir, ((spec.get("dtypes") or {}).get("fp32") or {}).get("speculative_onnx") or "onnx/decoder_spec.onnx")
    if os.path.exists(fp32):
        return cfg, fp32, None
    source = spec.get("converted_from") or {}
    if not source.get("path"):
        raise FileNotFoundError(f"{model_dir}: no fp32 graph ({os.path.relpath(fp32, model_dir)}) to read the weights from, "
                                "and config.json names no checkpoint it was converted from (specserve.converted_from)")
    return cfg, None, _checked_checkpoint(model_dir, source)


def _checked_checkpoint(model_dir, source):
    """The converted checkpoint's folder, once its files are seen to be the ones converted (same
    names and sizes): int8/int4 graphs of another checkpoint would train drafters for another model."""
    folder = source["path"]
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{model_dir} was converted from {folder}, which is gone; it has no fp32 graph to read "
                                "the weights from instead (convert again with --dtype fp32,...)")
    for name, size in (source.get("files") or {}).items():
        path = os.path.join(folder, name)
        found = os.path.getsize(path) if os.path.exists(path) else None
        if found != size:
            raise ValueError(f"{model_dir} was converted from {folder}, whose {name} has changed since "
                             f"({size} bytes then, {'missing' if found is None else f'{found} bytes'} now)")
    return folder


def _same_arch(a, b):
    plain = lambda c: {k: v for k, v in vars(c).items() if k != "inv_freq"}
    return plain(a) == plain(b) and np.array_equal(a.rope_inv_freq(), b.rope_inv_freq())
