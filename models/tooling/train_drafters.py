"""Trains and exports the drafters of any model folder, resumably: the one place that runs
heads.py, kangaroo.py (+ write_graphs.py), chimera.py and trigram.py for a model.

usage: /usr/bin/python3 models/tooling/train_drafters.py MODEL_DIR [--work DIR]
       [--kinds medusa,hydra,kangaroo,chimera,aded] [--steps N] [--seq N] [--batch N] [--selfgen N]
       [--draft-vocab N] [--threads N] [--heldout-prompts N] [--chimera-ffn N]
(npm run train-drafters tokenizes the text into the work folder, then runs this; models/build.sh
runs it on the token files prepare.py wrote.)

The work folder (default MODEL_DIR/.train-drafters/) holds the token splits train/valid .u16 (.u32
past 65,536 tokens), each drafter's checkpoint and log, and the target's greedy continuations the
drafters share. Rerunning continues each kind from its checkpoint and skips a kind already exported
with the same settings, tokens and target (a stamp exported_{kind}.json per kind); new token files
start every kind afresh. --steps, --seq and --batch apply to every trained kind; left out, each
script's own default holds. Each kind exports into MODEL_DIR with its manifest and training log;
Kangaroo's split graphs are written in the weight formats the folder has (write_graphs.py). The
last lines are a table of held-out top-1 agreement with the target per head / depth.

Progress: each script's lines pass through; step lines get the overall ETA appended (the rest of
this kind, plus the kinds to come at the current seconds per step scaled by their tokens per step).
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import weights  # noqa: E402

KINDS = ("medusa", "hydra", "kangaroo", "chimera", "aded")
TRAINED = ("medusa", "hydra", "kangaroo", "chimera")
# per kind: the manifest it exports (relative to MODEL_DIR) and the training log's place there
MANIFEST = {"medusa": "heads/medusa.json", "hydra": "heads/hydra.json", "kangaroo": "kangaroo/kangaroo.json",
            "chimera": "chimera/chimera.json", "aded": "aded/manifest.json"}
LOG_DIR = {"medusa": "heads", "hydra": "heads", "kangaroo": "kangaroo", "chimera": "chimera"}
# options passed on to every trained kind's script when given
PASSED = ("steps", "seq", "batch", "selfgen", "draft_vocab", "threads", "heldout_prompts")
STEP_LINE = re.compile(r"^\[(\w+)\] step (\d+)/(\d+) .* ([\d.]+) s/step eta")


def script_args(kind, a):
    """The command-line arguments of `kind`'s script after WORK MODEL_DIR: only what was given here."""
    if kind == "aded":
        return []
    args = ["--kind", kind] if kind in ("medusa", "hydra") else []
    for name in PASSED:
        v = getattr(a, name)
        if v is not None:
            args += [f"--{name.replace('_', '-')}", str(v)]
    if kind == "chimera" and a.chimera_ffn is not None:
        args += ["--ffn", str(a.chimera_ffn)]
    return args


def script_settings(kind, work, model_dir, args):
    """The parsed settings `kind`'s script will run with (its parser's defaults where nothing was given)."""
    if kind == "aded":
        return None
    mod = __import__("heads" if kind in ("medusa", "hydra") else kind)
    return mod.parser().parse_args([work, model_dir, *args])


def file_digest(paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def token_files(work):
    """The train and valid token files, the ones target.read_tokens reads."""
    from target import token_path  # torch comes with it: not imported before the cheap checks

    out = []
    for split in ("train", "valid"):
        found = token_path(work, split)
        if found is None:
            sys.exit(f"train_drafters: no {split}.u16 or {split}.u32 in {work}: tokenize text first (npm run train-drafters -- --text ...)")
        out.append(found)
    return out


def target_digest(model_dir):
    """What identifies the target: config.json without specserve's bookkeeping (write_graphs.py
    edits that), and the sizes of the weight files."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    cfg.pop("specserve", None)
    onnx_dir = os.path.join(model_dir, "onnx")
    sizes = sorted((f, os.path.getsize(os.path.join(onnx_dir, f))) for f in os.listdir(onnx_dir)) if os.path.isdir(onnx_dir) else []
    return hashlib.sha256(json.dumps([cfg, sizes], sort_keys=True).encode()).hexdigest()


def restart_if_tokens_changed(work, digest):
    """New token files: the drafters' checkpoints, logs, cached continuations and stamps made from
    older ones go. (A work folder seen for the first time keeps what it has: the build's
    models/.work holds checkpoints made from its own tokens, and the target's, which is never ours.)"""
    path = os.path.join(work, "tokens.json")
    old = json.load(open(path)).get("sha256") if os.path.exists(path) else None
    if old is not None and old != digest:
        kinds = "|".join(TRAINED)
        stale = [f for f in os.listdir(work) if re.match(rf"^(({kinds})\.pt|({kinds})_log\.jsonl|(selfgen|heldout)_\w+\.u(16|32)|exported_\w+\.json)$", f)]
        print(f"[train-drafters] the token files changed since the last run: starting every kind afresh ({len(stale)} work files removed)", flush=True)
        for f in stale:
            os.remove(os.path.join(work, f))
    with open(path, "w") as f:
        json.dump({"sha256": digest}, f)


def run(cmd, on_line):
    """Runs `cmd`, passing each output line to on_line; exits with its status when it fails."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    for line in p.stdout:
        on_line(line.rstrip("\n"))
    if p.wait() != 0:
        sys.exit(f"train_drafters: {' '.join(os.path.basename(c) if i < 2 else c for i, c in enumerate(cmd))} failed (exit {p.returncode})")


class Progress:
    """Overall ETA: the current kind's remaining steps at its measured pace, plus every kind still to
    come at the same pace per token (the frozen target's forward pass dominates a step)."""

    def __init__(self, plan):
        self.plan = plan          # [(kind, steps, tokens per step)] of the kinds still to train
        self.t0 = time.time()

    def line(self, text):
        m = STEP_LINE.match(text)
        if not m:
            return text
        kind, step, steps, per_step = m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4))
        todo = [p for p in self.plan if p[0] == kind]
        if not todo:
            return text
        rest = self.plan[self.plan.index(todo[0]) + 1:]
        per_token = per_step / todo[0][2]
        eta = (steps - step) * per_step + sum(n * tokens * per_token for _, n, tokens in rest)
        return f"{text} | overall: {kind} {step}/{steps}, {len(rest)} kind(s) after it, eta ~{eta / 60:.1f} min"

    def done(self, kind):
        self.plan = [p for p in self.plan if p[0] != kind]


def summary(model_dir, kinds):
    """Held-out top-1 agreement with the target per head / depth, from the manifests."""
    rows = []
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    for kind in kinds:
        path = os.path.join(model_dir, MANIFEST[kind])
        if not os.path.exists(path):
            continue
        m = json.load(open(path))
        if kind == "aded":
            rows.append((kind, "-", "n/a", "n/a (corpus trigram prior; adapts per request)"))
        elif kind == "kangaroo":
            rows.append((kind, "next token", pct(m["heldout_top1"]), pct(m["heldout_greedy_top1"])))
        else:
            label = m.get("offsets") or [f"depth {k + 1}" for k in range(len(m["heldout_top1"]))]
            for i, (text, greedy) in enumerate(zip(m["heldout_top1"], m["heldout_greedy_top1"])):
                rows.append((kind, label[i], pct(text), pct(greedy)))
    head = ("kind", "head/depth", "held-out text", "target's greedy continuations")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print("[train-drafters] held-out top-1 agreement with the target:", flush=True)
    for r in [head] + rows:
        print(("  " + fmt.format(*r)).rstrip(), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--work", default=None, help="work folder (default: MODEL_DIR/.train-drafters)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)} (default: all)")
    ap.add_argument("--steps", type=int, default=None, help="training steps of every trained kind (default: each script's own)")
    ap.add_argument("--seq", type=int, default=None, help="tokens per training window (default: each script's own)")
    ap.add_argument("--batch", type=int, default=None, help="windows per step (default: each script's own)")
    ap.add_argument("--selfgen", type=int, default=None, help="self-generated training sequences (default: each script's own)")
    ap.add_argument("--draft-vocab", type=int, default=None, help="draft vocabulary size (default: derived from the text, heads.draft_vocab)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    ap.add_argument("--heldout-prompts", type=int, default=None,
                    help="held-out prompts whose greedy continuations the agreement figures are taken on (default: the scripts' 32)")
    ap.add_argument("--chimera-ffn", type=int, default=None, help="Chimera's MLP width (default: the target's intermediate size)")
    a = ap.parse_args()
    model_dir = os.path.abspath(a.model_dir)
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        sys.exit(f"train_drafters: {os.path.join(model_dir, 'config.json')} not found: not a model folder")
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        sys.exit(f"train_drafters: --kinds {a.kinds!r}: expected some of {', '.join(KINDS)}")
    kinds = [k for k in KINDS if k in kinds]  # Chimera reuses heads/embed.f32; a fixed order keeps runs alike
    for name in ("steps", "seq", "batch", "draft_vocab", "threads", "heldout_prompts", "chimera_ffn"):
        v = getattr(a, name)
        if v is not None and v < 1:
            sys.exit(f"train_drafters: --{name.replace('_', '-')} must be at least 1, got {v}")
    try:  # every script reads the target's weights: refuse here, in one line, when they cannot
        weights.check_source(model_dir)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"train_drafters: {err}")
    work = os.path.abspath(a.work or os.path.join(model_dir, ".train-drafters"))
    os.makedirs(work, exist_ok=True)
    tokens = token_files(work)
    tokens_digest = file_digest(tokens)
    restart_if_tokens_changed(work, tokens_digest)
    model_digest = target_digest(model_dir)

    todo, plan = [], []
    for kind in kinds:
        args = script_args(kind, a)
        stamp_path = os.path.join(work, f"exported_{kind}.json")
        stamp = {"args": args, "tokens": tokens_digest, "target": model_digest}
        done = os.path.exists(stamp_path) and json.load(open(stamp_path)) == stamp
        if done and os.path.exists(os.path.join(model_dir, MANIFEST[kind])):
            print(f"[train-drafters] {kind}: already exported with these settings ({MANIFEST[kind]}); skipped", flush=True)
            continue
        todo.append((kind, args, stamp, stamp_path))
        s = script_settings(kind, work, model_dir, args)
        if s is not None:
            plan.append((kind, s.steps, s.batch * s.seq))
    print(f"[train-drafters] {model_dir}: {', '.join(k for k, *_ in todo) or 'nothing'} to do; work folder {work}", flush=True)
    progress = Progress(plan)
    t0 = time.time()
    for kind, args, stamp, stamp_path in todo:
        t_kind = time.time()
        script = "trigram.py" if kind == "aded" else "heads.py" if kind in ("medusa", "hydra") else f"{kind}.py"
        emit = lambda line: print(progress.line(line), flush=True)  # noqa: E731
        run([sys.executable, os.path.join(HERE, script), work, model_dir, *args], emit)
        if kind == "kangaroo":  # its split graphs, as the target's own kernels, in the folder's weight formats
            run([sys.executable, os.path.join(HERE, "write_graphs.py"), model_dir, "--kangaroo-only"], emit)
        if kind in LOG_DIR and os.path.exists(os.path.join(work, f"{kind}_log.jsonl")):
            shutil.copyfile(os.path.join(work, f"{kind}_log.jsonl"), os.path.join(model_dir, LOG_DIR[kind], f"{kind}_log.jsonl"))
        with open(stamp_path, "w") as f:
            json.dump(stamp, f)
        progress.done(kind)
        print(f"[train-drafters] {kind}: exported in {time.time() - t_kind:.0f} s ({MANIFEST[kind]})", flush=True)
    if todo:
        print(f"[train-drafters] done in {(time.time() - t0) / 60:.1f} min", flush=True)
    summary(model_dir, kinds)


if __name__ == "__main__":
    main()
