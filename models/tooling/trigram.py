"""Step 4 of the build: the ADED corpus prior, a pruned trigram table over the training tokens.

usage: /usr/bin/python3 models/tooling/trigram.py WORK_DIR MODEL_DIR [--top 12] [--min-count 2]

Counts every token trigram (a, b) -> c in WORK_DIR's training tokens (train.u16, or train.u32 past
65,536 tokens), normalises each (a, b) row to probabilities and keeps the top successors (ADED
keeps 12). Binary little-endian file MODEL_DIR/aded/trigram.bin, in one of two versions:
  'TRI1' (vocabularies up to 65,536 tokens: every key fits 32 bits, every id 16)
    magic | u32 vocab | u32 rows | u32 entries
    u32 keys[rows]       (a * vocab + b, ascending)
    u32 offsets[rows+1]  (into the entry arrays)
    u16 next[entries]    (successor c, by descending probability within a row)
    f32 prob[entries]
  'TRI2' (larger vocabularies, e.g. Llama 3's 128,256): the same with u64 keys and u32 next.
src/drafters/aded/trigram.ts reads both.
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from target import read_tokens, token_suffix  # noqa: E402

# per version: magic, key type, successor type
FORMATS = {"u16": (b"TRI1", "<u4", "<u2"), "u32": (b"TRI2", "<u8", "<u4")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("model_dir")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--min-count", type=int, default=2)
    a = ap.parse_args()
    t0 = time.time()
    tok = read_tokens(a.work, "train").astype(np.int64)
    V = int(json.load(open(os.path.join(a.model_dir, "config.json")))["vocab_size"])
    if tok.size and int(tok.max()) >= V:
        sys.exit(f"trigram: training tokens go up to {int(tok.max())}, past the model's vocabulary of {V}")
    key = tok[:-2] * V + tok[1:-1]              # (a, b)
    tri = key * V + tok[2:]                      # (a, b, c): below V^3, < 2^63 for any vocabulary under 2 M
    uniq, counts = np.unique(tri, return_counts=True)
    pair = uniq // V
    nxt = uniq % V
    pu, inv = np.unique(pair, return_inverse=True)
    tot = np.bincount(inv, weights=counts)
    prob = counts / tot[inv]
    keep = counts >= a.min_count
    pair, nxt, prob, inv = pair[keep], nxt[keep], prob[keep], inv[keep]
    # sort by pair asc, prob desc; keep top per pair
    order = np.lexsort((-prob, pair))
    pair, nxt, prob = pair[order], nxt[order], prob[order]
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    rank = np.arange(pair.size) - np.repeat(starts, np.diff(np.r_[starts, pair.size]))
    keep = rank < a.top
    pair, nxt, prob = pair[keep], nxt[keep], prob[keep]
    keys, first = np.unique(pair, return_index=True)
    offsets = np.r_[first, pair.size].astype(np.uint32)
    os.makedirs(os.path.join(a.model_dir, "aded"), exist_ok=True)
    path = os.path.join(a.model_dir, "aded", "trigram.bin")
    magic, key_type, next_type = FORMATS[token_suffix(V)]
    with open(path + ".tmp", "wb") as f:
        f.write(magic)
        f.write(struct.pack("<III", V, keys.size, pair.size))
        f.write(keys.astype(key_type).tobytes())
        f.write(offsets.astype("<u4").tobytes())
        f.write(nxt.astype(next_type).tobytes())
        f.write(prob.astype("<f4").tobytes())
    os.replace(path + ".tmp", path)
    manifest = {"file": "trigram.bin", "format": magic.decode(), "rows": int(keys.size), "entries": int(pair.size), "top": a.top,
                "min_count": a.min_count, "source_tokens": int(tok.size), "bytes": os.path.getsize(path)}
    json.dump(manifest, open(os.path.join(a.model_dir, "aded", "manifest.json"), "w"), indent=2)
    print(f"[trigram] {keys.size} pairs, {pair.size} entries ({magic.decode()}), {os.path.getsize(path) / 1e6:.1f} MB in "
          f"{time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
