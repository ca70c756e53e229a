"""Step 2 of the build: train the target decoder, resumably.

usage: /usr/bin/python3 models/tooling/train.py WORK_DIR [--steps N] [--batch B] [--seq T] ...
Checkpoints WORK_DIR/target.pt (model, optimizer, step; the schedule is a pure function of the step,
the data order a pure function of seed and step, so a resumed run continues exactly where it left).
Appends one JSON line per logged step to WORK_DIR/train_log.jsonl.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Config, Decoder  # noqa: E402


def lr_at(step, total, peak, warmup, floor=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def batch_at(data, step, seed, batch, seq):
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, data.size - seq - 1, size=batch)
    x = np.stack([data[s:s + seq + 1] for s in starts]).astype(np.int64)
    x = torch.from_numpy(x)
    return x[:, :-1], x[:, 1:]


@torch.no_grad()
def evaluate(model, data, seq, max_windows=40):
    model.eval()
    n = min(max_windows, (data.size - 1) // seq)
    tot = 0.0
    for i in range(n):
        x = torch.from_numpy(data[i * seq:i * seq + seq + 1].astype(np.int64)).unsqueeze(0)
        tot += model.loss(x[:, :-1], x[:, 1:]).item()
    model.train()
    return tot / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--stop-after", type=int, default=0, help="stop (resumably) after this many steps this run")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    train = np.fromfile(os.path.join(a.work, "train.u16"), dtype=np.uint16)
    valid = np.fromfile(os.path.join(a.work, "valid.u16"), dtype=np.uint16)
    cfg = Config(context=a.seq)
    model = Decoder(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    ckpt_path = os.path.join(a.work, "target.pt")
    log_path = os.path.join(a.work, "train_log.jsonl")
    step, elapsed = 0, 0.0
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck["elapsed"]
        print(f"[train] resumed at step {step} ({elapsed / 60:.1f} min so far)", flush=True)
    print(f"[train] params {model.n_params() / 1e6:.2f} M ({model.n_params(False) / 1e6:.2f} M non-embedding), "
          f"{train.size / 1e6:.2f} M train tokens, {a.steps} steps x {a.batch}x{a.seq} tokens", flush=True)

    def save():
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
                    "config": cfg.to_dict(), "args": vars(a)}, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)

    model.train()
    run_start, run_steps = time.time(), 0
    t_last = time.time()
    while step < a.steps:
        lr = lr_at(step, a.steps, a.lr, a.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch_at(train, step, a.seed, a.batch, a.seq)
        loss = model.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item()
        opt.step()
        step += 1
        run_steps += 1
        now = time.time()
        elapsed += now - t_last
        t_last = now
        rec = {"step": step, "loss": round(loss.item(), 4), "lr": round(lr, 6), "gnorm": round(gnorm, 3),
               "elapsed_s": round(elapsed, 1)}
        if step % a.eval_every == 0 or step == a.steps:
            rec["valid_loss"] = round(evaluate(model, valid, a.seq), 4)
        if step % 10 == 0 or "valid_loss" in rec:
            tps = run_steps * a.batch * a.seq / (now - run_start)
            eta = (a.steps - step) * a.batch * a.seq / tps
            extra = f" valid {rec['valid_loss']:.3f}" if "valid_loss" in rec else ""
            print(f"[train] step {step}/{a.steps} loss {loss.item():.3f}{extra} lr {lr:.2e} "
                  f"{tps:.0f} tok/s eta {eta / 60:.1f} min", flush=True)
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if step % a.save_every == 0 or step == a.steps:
            save()
        if a.stop_after and run_steps >= a.stop_after:
            save()
            print("[train] stopping early as asked; rerun to resume", flush=True)
            return
    print(f"[train] done: {step} steps, {elapsed / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
