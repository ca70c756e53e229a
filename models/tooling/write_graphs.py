"""Writes a model folder's target graphs, in every weight format, from its fp32 weights.

usage: /usr/bin/python3 models/tooling/write_graphs.py MODEL_DIR [--dtypes fp32,int8,int4] [--split N]
       [--kangaroo-only]

Reads the fp32 weights through weights.load (the folder's fp32 graph, or the checkpoint it was
converted from) and writes, for each dtype (file suffix graph.SUFFIX: "", _int8, _q4; default: the
ones config.json's specserve.dtypes lists, or all three when it lists none):
  onnx/decoder_spec{sfx}.onnx   speculation-ready layout
  onnx/model{sfx}.onnx          Hugging Face Optimum layout (transformers.js loads it)
  kangaroo/deep{sfx}.onnx       the target's layers [split, L) (when MODEL_DIR/kangaroo/ exists)
  kangaroo/draft{sfx}.onnx      Kangaroo's draft graph with its shallow layers rewritten as the
                                target's own (same kernels, same weights, inputs cache_position and
                                cache_attention_bias): the engine commits the K/V and states these
                                compute as if the target had, so they must match it to the bit. The
                                adapter and draft head in it are kept as trained.
and records them in config.json (specserve.dtypes) and kangaroo/kangaroo.json (files).
--kangaroo-only writes Kangaroo's split graphs alone (after training the adapter, the target's own
graphs are already there). Every file is written beside its target and renamed into place.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import graph  # noqa: E402
import weights  # noqa: E402


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_weights(model_dir, cfg=None):
    """The fp32 weights of a model folder (weights.load); `cfg` is unused, kept for gguf.py."""
    try:
        return weights.load(model_dir)[1]
    except (FileNotFoundError, ValueError) as err:  # no source, or a changed checkpoint: one line, not a traceback
        sys.exit(f"write_graphs: {err}")


CACHE_BIAS = "cache_attention_bias"


def graft_shallow(draft_path, out_path, w, cfg, split, dtype):
    """Kangaroo's draft graph with the producers of hidden_shallow and the shallow layers' new K/V
    replaced by graph.py's shallow layout. The embedding table is the draft graph's own initializer
    (stored as external data beside it) and stays where it is."""
    mo = onnx.load(draft_path, load_external_data=False)
    g = mo.graph
    gather = [n for n in g.node if n.op_type == "Gather" and n.input[1] == "input_ids"]
    if len(gather) != 1:
        raise ValueError(f"{draft_path}: expected one embedding Gather on input_ids, found {len(gather)}")
    embed = gather[0].input[0]
    shallow = graph.build(w, cfg, "shallow", dtype, split=split, embed_name=embed).graph
    # the target's layers place new rows in cache slots (graph.py); the adapter after them appends
    # its new row to its past, so each gets a mask of its own: the target layers' is cache_attention_bias
    for n in shallow.node:
        n.input[:] = [CACHE_BIAS if x == "attention_bias" else x for x in n.input]
    for name, src in ((CACHE_BIAS, "attention_bias"), ("cache_position", "cache_position")):
        if name not in {i.name for i in g.input}:
            info = next(i for i in shallow.input if i.name == src)
            info.name = name
            g.input.append(info)
    replaced = {o.name for o in shallow.output}
    # drop the old producers of the replaced tensors and whatever only they used
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(_toposort([n for n in g.node if not (set(n.output) & replaced)])):
        if set(n.output) & needed:
            keep.append(n)
            needed.update(x for x in n.input if x)
    taken = {x for n in keep for x in list(n.input) + list(n.output)} | {i.name for i in g.initializer if i.name in needed}
    clash = ({x for n in shallow.node for x in n.output} | {i.name for i in shallow.initializer}) - replaced - {embed}
    clash &= taken
    if clash:
        raise ValueError(f"{draft_path}: names of the rewritten layers are taken: {sorted(clash)[:5]}")
    nodes = _toposort(list(reversed(keep)) + list(shallow.node))
    needed |= {x for n in shallow.node for x in n.input}
    fresh = [i for i in shallow.initializer if i.name != embed]
    provided = {i.name for i in fresh}
    inits = [i for i in g.initializer if i.name in needed and i.name not in provided] + fresh
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    for i in g.input:
        if i.name not in needed:
            raise ValueError(f"{draft_path}: input {i.name} would no longer be read")
    tmp = out_path + ".tmp"
    onnx.save(mo, tmp)
    os.replace(tmp, out_path)


def _toposort(nodes):
    produced = {o: n for n in nodes for o in n.output}
    done, order = set(), []

    def visit(n):
        if id(n) in done:
            return
        done.add(id(n))
        for x in n.input:
            if x in produced:
                visit(produced[x])
        order.append(n)

    for n in nodes:
        visit(n)
    return order


def write_kangaroo(model_dir, w, cfg, split, dtypes, kman_path):
    """Kangaroo's deep and draft graphs in each of `dtypes`, listed in its manifest."""
    kdir = os.path.dirname(kman_path)
    kman = json.load(open(kman_path))
    # the fp32 draft graph is the source of every variant's adapter and head: rewrite it last
    for dtype in sorted(dtypes, key=lambda d: d == "fp32"):
        sfx = graph.SUFFIX[dtype]
        deep = os.path.join(kdir, f"deep{sfx}.onnx")
        deep_model = graph.build(w, cfg, "deep", dtype, split=split)
        if dtype == "fp32" and cfg.tied:  # its LM head reads the table the draft graph's embedding does
            graph.store_outside(deep_model, "model.embed_tokens.weight", os.path.join(kdir, "embed.f32"))
        graph.save(deep_model, deep)
        draft = os.path.join(kdir, f"draft{sfx}.onnx")
        graft_shallow(os.path.join(kdir, "draft.onnx"), draft, w, cfg, split, dtype)
        for f in (deep, draft):
            kman["files"][os.path.basename(f)] = {"bytes": os.path.getsize(f), "sha256": sha256(f)}
            print(f"[graphs] kangaroo/{os.path.basename(f)}: {os.path.getsize(f) / 1e6:.1f} MB", flush=True)
    _write_json(kman_path, kman)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--dtypes", default=None, help="comma-separated: fp32, int8, int4 (default: the folder's own, "
                    "config.json specserve.dtypes; all three when it has none)")
    ap.add_argument("--split", type=int, default=None, help="layers before hidden_shallow (default: config.json's)")
    ap.add_argument("--kangaroo-only", action="store_true", help="only Kangaroo's split graphs (the folder needs kangaroo/draft.onnx)")
    a = ap.parse_args()
    cfg_path = os.path.join(a.model_dir, "config.json")
    if not os.path.exists(cfg_path):
        sys.exit(f"write_graphs: {cfg_path} not found")
    hf = json.load(open(cfg_path))
    cfg = graph.ArchConfig.from_hf(hf)
    spec = hf.setdefault("specserve", {})
    split = a.split or spec.get("shallow_layers") or 1
    dtypes = [d.strip() for d in a.dtypes.split(",") if d.strip()] if a.dtypes else list(spec.get("dtypes") or graph.DTYPES)
    bad = [d for d in dtypes if d not in graph.DTYPES]
    if bad:
        sys.exit(f"write_graphs: unknown dtype {bad[0]!r}; expected one of {', '.join(graph.DTYPES)}")
    kman_path = os.path.join(a.model_dir, "kangaroo", "kangaroo.json")
    has_kangaroo = os.path.exists(kman_path) and os.path.exists(os.path.join(a.model_dir, "kangaroo", "draft.onnx"))
    if a.kangaroo_only and not has_kangaroo:
        sys.exit(f"write_graphs: --kangaroo-only needs a trained adapter ({kman_path} and kangaroo/draft.onnx: kangaroo.py)")
    t0 = time.time()
    w = load_weights(a.model_dir, cfg)
    if not a.kangaroo_only:
        variants = spec.get("dtypes", {})
        for dtype in dtypes:
            sfx = graph.SUFFIX[dtype]
            files = {"speculative_onnx": f"onnx/decoder_spec{sfx}.onnx", "standard_onnx": f"onnx/model{sfx}.onnx"}
            for key, layout in (("speculative_onnx", "speculative"), ("standard_onnx", "standard")):
                path = os.path.join(a.model_dir, files[key])
                graph.save(graph.build(w, cfg, layout, dtype, split=split), path)
                print(f"[graphs] {files[key]}: {os.path.getsize(path) / 1e6:.1f} MB", flush=True)
            variants[dtype] = {**files, "weights": graph.describe(dtype)}
        spec["dtypes"] = {d: variants[d] for d in graph.DTYPES if d in variants}
        spec["speculative_onnx"], spec["standard_onnx"] = "onnx/decoder_spec.onnx", "onnx/model.onnx"
        spec["shallow_layers"] = split
        spec.pop("kv_layout", None)
        spec["past_layout"] = "head-major"
        spec["graphs"] = "models/tooling/graph.py"
        _write_json(cfg_path, hf)
    if has_kangaroo:
        write_kangaroo(a.model_dir, w, cfg, split, dtypes, kman_path)
    print(f"[graphs] done in {time.time() - t0:.0f}s", flush=True)


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
