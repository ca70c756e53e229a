"""8-bit weights for the drafters' graphs.

usage: /usr/bin/python3 models/tooling/quantize.py GRAPH.onnx [...] [--exact OUTPUT ...]

At this model size a drafter's onnxruntime call is bound by reading its weights, not by arithmetic:
the draft rows are a handful, so every MatMul streams its whole weight matrix from memory for a few
dot products each, and a drafter's weights next to the target's (22 MB) no longer fit in the CPU's
cache between steps. Hydra's four heads read ~16 MB a step in fp32 and took ~2 ms of a ~6 ms step.

Every MatMul / Gemm whose weight is a constant becomes com.microsoft MatMulNBits: 8-bit weights,
symmetric, one fp32 scale per block of 32 inputs, and accuracy_level 4 (int8 compute: each
activation row is quantized per block on its own, so a row's result does not depend on the other
rows of the call and a sequence's draft does not depend on its batch). About 28% of the fp32 bytes;
drafts change a little, losslessness does not (the target verifies every draft token at full
precision). DynamicQuantizeMatMul, tried first, quantizes the whole activation tensor with one
scale: a sequence's draft then depended on its batch.

Nodes that feed an `--exact` output keep their fp32 weights: Kangaroo's draft graph runs the
target's own shallow layers, and the engine verifies with their states and K/V, so those must be the
target's to the bit; only its adapter and LM head are quantized.

The graph is edited in place. Weights kept in external data stay there (the file is loaded without
them); quantized weights are stored inline.
"""
import argparse
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import graph  # noqa: E402

NBITS = 8
# the target graphs' 8-bit format (graph.py): blocks of 32, symmetric, int8 compute (each activation
# row quantized per block on its own, so a row's result does not depend on the other rows of the call)
BLOCK = graph.BLOCK
ACCURACY_LEVEL = graph.ACCURACY_LEVEL
DESCRIPTION = ("8-bit weights in blocks of 32, int8 compute (com.microsoft MatMulNBits, accuracy_level 4; "
               "models/tooling/quantize.py)")


def ancestors(g, outputs):
    """Indices of the nodes whose results reach any of `outputs`."""
    nodes = list(g.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    seen, stack = set(), list(outputs)
    while stack:
        i = producer.get(stack.pop())
        if i is None or i in seen:
            continue
        seen.add(i)
        stack.extend(nodes[i].input)
    return seen


def quantize_model(mo, base, exact=()):
    """Quantizes the ModelProto `mo` in place (external weights are read from the folder `base`);
    returns (weights quantized, weights kept fp32 for `exact`)."""
    g = mo.graph
    init = {i.name: i for i in g.initializer}
    keep = ancestors(g, list(exact)) if exact else set()
    made, done, kept = {}, 0, 0
    nodes = []
    for idx, n in enumerate(g.node):
        if n.op_type not in ("MatMul", "Gemm") or len(n.input) < 2 or n.input[1] not in init:
            nodes.append(n)
            continue
        if idx in keep:
            kept += 1
            nodes.append(n)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Gemm" and (attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(n)
            continue
        trans = n.op_type == "Gemm" and attrs.get("transB", 0)
        wname = n.input[1]
        key = (wname, bool(trans))
        if key not in made:  # one quantized copy per weight, however many nodes use it
            W = numpy_helper.to_array(init[wname], base_dir=base).astype(np.float32)
            if W.ndim != 2:
                nodes.append(n)
                continue
            Bt = np.ascontiguousarray(W if trans else W.T)              # [N, K]: one row per output
            stem = f"{wname}{'_T' if trans else ''}_nbits"
            q, sc = graph.quantize_blocks(Bt.T, NBITS)
            g.initializer.extend([numpy_helper.from_array(q, stem), numpy_helper.from_array(sc, stem + "_scale")])
            made[key] = (stem, Bt.shape)
        stem, (N, K) = made[key]
        name = (n.name or n.output[0]) + "_nbits"
        bias = n.input[2] if n.op_type == "Gemm" and len(n.input) > 2 and n.input[2] else None
        out = n.output[0] + "_nobias" if bias else n.output[0]
        nodes.append(helper.make_node("MatMulNBits", [n.input[0], stem, stem + "_scale"], [out], domain="com.microsoft", name=name,
                                      K=K, N=N, bits=NBITS, block_size=BLOCK, accuracy_level=ACCURACY_LEVEL))
        if bias:
            nodes.append(helper.make_node("Add", [out, bias], [n.output[0]], name=name + "_bias"))
        done += 1
    del g.node[:]
    g.node.extend(nodes)
    used = {x for n in g.node for x in n.input}
    for i in list(g.initializer):
        if i.name not in used:
            g.initializer.remove(i)
    if done and not any(o.domain == "com.microsoft" for o in mo.opset_import):
        mo.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return done, kept


def quantize_graph(path, exact=()):
    """Quantizes the graph file `path` in place, leaving external data where it is."""
    mo = onnx.load(path, load_external_data=False)
    done, kept = quantize_model(mo, os.path.dirname(os.path.abspath(path)), exact)
    onnx.save(mo, path)
    onnx.checker.check_model(path)
    return done, kept


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("graphs", nargs="+")
    ap.add_argument("--exact", nargs="*", default=[], help="outputs whose producers keep fp32 weights")
    a = ap.parse_args()
    for p in a.graphs:
        done, kept = quantize_graph(p, a.exact)
        print(f"[quantize] {p}: {done} weights to 8 bits, {kept} kept fp32, {os.path.getsize(p)} bytes", flush=True)


if __name__ == "__main__":
    main()
