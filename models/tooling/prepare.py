"""Step 1 of the build: corpus -> BPE tokenizer -> token arrays.

usage: /usr/bin/python3 models/tooling/prepare.py WORK_DIR MODEL_DIR [--vocab 4096] [--sample-mb 4]
Writes WORK_DIR/train.u16, WORK_DIR/valid.u16, WORK_DIR/corpus.json and the tokenizer files into
MODEL_DIR.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import corpus  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("model_dir")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--sample-mb", type=float, default=4.0, help="text sampled evenly for BPE training")
    ap.add_argument("--context", type=int, default=1024)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    t0 = time.time()
    train_docs, valid_docs, manifest = corpus.collect()
    print(f"[prepare] corpus: {manifest['files']} files, {sum(manifest['bytes'].values()) / 1e6:.1f} MB", flush=True)

    # BPE on evenly spaced documents (every k-th) up to sample-mb of text
    budget = int(a.sample_mb * 1e6)
    step = max(1, round(sum(len(d) for d in train_docs) / budget))
    sample = "".join(train_docs[::step])[:budget]
    print(f"[prepare] training BPE vocab={a.vocab} on {len(sample) / 1e6:.1f} MB sample", flush=True)
    merges = bpe.train(sample, a.vocab, log=lambda s: print("[prepare]" + s, flush=True))
    enc = bpe.write_hf(merges, a.model_dir, a.context)
    assert enc.eos_id == a.vocab - 1, (enc.eos_id, a.vocab)

    def encode_all(docs, name):
        out = []
        for i, d in enumerate(docs):
            out.extend(enc.encode(d))
            out.append(enc.eos_id)
            if i % 500 == 0:
                print(f"[prepare] encode {name}: {i}/{len(docs)} docs, {len(out) / 1e6:.2f} M tokens", flush=True)
        arr = np.array(out, dtype=np.uint16)
        arr.tofile(os.path.join(a.work, f"{name}.u16"))
        return arr

    tr = encode_all(train_docs, "train")
    va = encode_all(valid_docs, "valid")
    n_chars = sum(len(d) for d in train_docs)
    manifest.update({
        "vocab": a.vocab, "bpe_sample_mb": a.sample_mb,
        "train_tokens": int(tr.size), "valid_tokens": int(va.size),
        "chars_per_token": round(n_chars / tr.size, 3),
        "seconds": round(time.time() - t0, 1),
    })
    with open(os.path.join(a.work, "corpus.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"[prepare] done: {tr.size / 1e6:.2f} M train / {va.size / 1e6:.3f} M valid tokens in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
