"""The resumable training loop the drafter scripts share (heads.py, kangaroo.py, chimera.py).

The target's own loop (train.py) keeps its own: it adds evaluation, throughput and --stop-after.
"""
import json
import os
import time

import torch

from train import lr_at


def train_resumable(tag, module, opt, ckpt, log_path, steps, lr, step_fn, state_key="model", save_every=50):
    """Runs `step_fn(step) -> (loss, record, progress)` until `steps`, resuming from `ckpt`.

    Each step: warm-up + cosine learning rate, backward, gradient clipping at 1.0, one line of
    `record` (plus step and loss) appended to `log_path`, a progress line every 10 steps, a
    checkpoint (module under `state_key`, optimizer, step, elapsed seconds) every `save_every` and
    at the end. Returns (steps done, elapsed seconds over every run).
    """
    step, elapsed = 0, 0.0
    if os.path.exists(ckpt):
        ck = torch.load(ckpt, map_location="cpu")
        module.load_state_dict(ck[state_key])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck["elapsed"]
        print(f"[{tag}] resumed at step {step}", flush=True)
    t_last = time.time()
    while step < steps:
        module.train()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, max(1, steps // 20))
        loss, record, progress = step_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        step += 1
        now = time.time()
        elapsed += now - t_last
        t_last = now
        with open(log_path, "a") as f:
            f.write(json.dumps({"step": step, "loss": round(loss.item(), 4), **record}) + "\n")
        if step % 10 == 0 or step == steps:
            eta = (steps - step) * elapsed / step
            print(f"[{tag}] step {step}/{steps} loss {loss.item():.3f} {progress} {elapsed / step:.1f} s/step eta {eta / 60:.1f} min", flush=True)
        if step % save_every == 0 or step == steps:
            torch.save({state_key: module.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed}, ckpt)
    return step, elapsed
