"""Step 5 of the build: what specserve-tiny ships besides the converted graphs, from the trained
target itself rather than from the graphs (so the Node-side check compares two paths).

usage: /usr/bin/python3 models/tooling/tiny_files.py WORK_DIR MODEL_DIR

  MODEL_DIR/reference.json         torch outputs of WORK/target.pt (prefill logits, hidden states,
                                   hidden_shallow at the folder's shallow_layers, a greedy
                                   continuation) that check.ts and the tests compare the graphs with
  MODEL_DIR/lantern/neighbours.json  LANTERN's whitelisted neighbour sets
  MODEL_DIR/heldout.txt            4,000 tokens of held-out text (validation split) for perplexity
                                   and KV-cache benchmarks in Node
  MODEL_DIR/config.json            specserve.trained_steps and training_minutes added
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
from export import eos_id, load_target  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work")
    ap.add_argument("out")
    a = ap.parse_args()
    work, out = a.work, a.out
    t0 = time.time()
    torch.set_num_threads(1)
    config_path = os.path.join(out, "config.json")
    config = json.load(open(config_path))
    model, cfg, ck = load_target(work)
    if "specserve" not in config:
        sys.exit(f"tiny_files: {config_path} has no specserve block: convert the checkpoint first")
    # hidden_shallow where the converted graphs take it
    model.c.shallow_layers = config["specserve"]["shallow_layers"]
    tok = json.load(open(os.path.join(out, "tokenizer.json")))
    eos = eos_id(out)

    # ---- torch reference for the Node-side check (prefill logits + greedy continuation) ----
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

    # LANTERN neighbour sets, restricted to a whitelist of equivalence classes (docs/methods.md §6): tokens
    # that decode to the same text up to case and surrounding whitespace, never digits; each list is
    # ordered by L2 distance in the target's embedding space
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
    print(f"[tiny-files] LANTERN: {len(neighbours)} tokens have whitelisted neighbours", flush=True)

    # a slice of held-out text (validation split) for perplexity / KV-cache benchmarks in Node
    text = enc.decode([int(x) for x in data[:4000]])
    with open(os.path.join(out, "heldout.txt"), "w") as f:
        f.write(text)
    config["specserve"].update(trained_steps=ck["step"], training_minutes=round(ck["elapsed"] / 60, 1))
    with open(config_path + ".tmp", "w") as f:
        json.dump(config, f, indent=2)
    os.replace(config_path + ".tmp", config_path)
    print(f"[tiny-files] done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
